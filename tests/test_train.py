"""Training loop: exact resume, atomic checkpoints, load-if-present, devices (CPU, tiny)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from adlib import train
from adlib.train import (
    CheckpointError,
    DeviceError,
    History,
    config_hash,
    fit,
    load_checkpoint,
    load_or_train,
    save_checkpoint,
    seed_everything,
    select_device,
)

N_EPOCHS = 4


def _data() -> TensorDataset:
    gen = torch.Generator().manual_seed(123)
    return TensorDataset(torch.rand(24, 8, generator=gen))


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Dropout(0.3), nn.Linear(6, 8))


def _setup(seed: int = 0, loader_generator: bool = True):
    seed_everything(seed)
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed) if loader_generator else None
    loader = DataLoader(_data(), batch_size=5, shuffle=True, generator=gen)
    return model, opt, loader


def _assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), f"parameter {name} differs"


def _noisy_val(model: nn.Module) -> float:
    # Consumes every RNG (python, numpy, torch) so that resume must restore them all.
    x = torch.rand(4, 8) + random.random() + float(np.random.rand())
    return float(nn.functional.mse_loss(model(x), x))


@pytest.mark.parametrize("loader_generator", [True, False])
def test_resume_after_k_epochs_matches_uninterrupted(tmp_path, loader_generator):
    model_a, opt_a, loader_a = _setup(loader_generator=loader_generator)
    hist_a = fit(model_a, loader_a, loss_fn=nn.functional.mse_loss, optimizer=opt_a,
                 epochs=N_EPOCHS, device="cpu", val_fn=_noisy_val, progress=False)

    ckpt = tmp_path / "run.pt"
    model_b, opt_b, loader_b = _setup(loader_generator=loader_generator)
    fit(model_b, loader_b, loss_fn=nn.functional.mse_loss, optimizer=opt_b, epochs=2,
        device="cpu", val_fn=_noisy_val, checkpoint_path=ckpt, progress=False)
    assert load_checkpoint(ckpt)["epoch"] == 2

    # A "new process": different seed, fresh model, fresh loader; everything comes from the file.
    model_c, opt_c, loader_c = _setup(seed=99, loader_generator=loader_generator)
    hist_c = fit(model_c, loader_c, loss_fn=nn.functional.mse_loss, optimizer=opt_c,
                 epochs=N_EPOCHS, device="cpu", val_fn=_noisy_val, checkpoint_path=ckpt,
                 progress=False)
    _assert_same_weights(model_a, model_c)
    assert len(hist_c.epochs) == N_EPOCHS
    assert hist_c.to_frame("step")["loss"].tolist() == hist_a.to_frame("step")["loss"].tolist()
    assert hist_c.to_frame()["val_loss"].tolist() == hist_a.to_frame()["val_loss"].tolist()


def test_keyboard_interrupt_leaves_usable_checkpoint(tmp_path):
    model_a, opt_a, loader_a = _setup()
    fit(model_a, loader_a, loss_fn=nn.functional.mse_loss, optimizer=opt_a, epochs=N_EPOCHS,
        device="cpu", progress=False)

    def interrupt(epoch: int, history: History) -> None:
        if epoch == 2:
            raise KeyboardInterrupt

    ckpt = tmp_path / "run.pt"
    model_b, opt_b, loader_b = _setup()
    with pytest.raises(KeyboardInterrupt):
        fit(model_b, loader_b, loss_fn=nn.functional.mse_loss, optimizer=opt_b,
            epochs=N_EPOCHS, device="cpu", checkpoint_path=ckpt, progress=False,
            on_epoch_end=interrupt)
    state = load_checkpoint(ckpt)
    assert state["epoch"] == 2 and not state["finished"]
    assert list(tmp_path.iterdir()) == [ckpt]

    model_c, opt_c, loader_c = _setup(seed=7)
    fit(model_c, loader_c, loss_fn=nn.functional.mse_loss, optimizer=opt_c, epochs=N_EPOCHS,
        device="cpu", checkpoint_path=ckpt, progress=False)
    _assert_same_weights(model_a, model_c)
    assert load_checkpoint(ckpt)["finished"]


def test_custom_step_with_two_optimizers_resumes_identically(tmp_path):
    """An f-AnoGAN-like alternation: critic every step, generator every 2nd global step."""

    def build(seed):
        seed_everything(seed)
        model = nn.ModuleDict({"gen": nn.Linear(4, 8), "critic": nn.Sequential(nn.Linear(8, 1))})
        opts = {"gen": torch.optim.Adam(model["gen"].parameters(), lr=1e-3),
                "critic": torch.optim.Adam(model["critic"].parameters(), lr=1e-3)}
        loader = DataLoader(_data(), batch_size=6, shuffle=True,
                            generator=torch.Generator().manual_seed(seed))
        return model, opts, loader

    def step(model, batch, ctx):
        (real,) = batch
        z = torch.randn(real.shape[0], 4)
        critic_loss = model["critic"](model["gen"](z).detach()).mean() - model["critic"](real).mean()
        ctx.backward_step(critic_loss, "critic")
        out = {"critic": critic_loss.item()}
        if ctx.step % 2 == 0:
            gen_loss = -model["critic"](model["gen"](z)).mean()
            ctx.backward_step(gen_loss, "gen")
            out["gen"] = gen_loss.item()
        return out

    model_a, opts_a, loader_a = build(0)
    hist_a = fit(model_a, loader_a, optimizer=opts_a, step_fn=step, epochs=3, progress=False)
    ckpt = tmp_path / "gan.pt"
    model_b, opts_b, loader_b = build(0)
    fit(model_b, loader_b, optimizer=opts_b, step_fn=step, epochs=1, checkpoint_path=ckpt,
        progress=False)
    model_c, opts_c, loader_c = build(5)
    hist_c = fit(model_c, loader_c, optimizer=opts_c, step_fn=step, epochs=3,
                 checkpoint_path=ckpt, progress=False)
    _assert_same_weights(model_a, model_c)
    frame = hist_c.to_frame("step")
    assert {"critic", "gen"} <= set(frame.columns)
    assert frame["gen"].isna().sum() == len(frame) // 2  # generator skipped on odd steps
    assert hist_a.to_frame()["critic"].tolist() == hist_c.to_frame()["critic"].tolist()


def test_atomic_save_keeps_old_file_on_crash(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint({"format": train.CHECKPOINT_FORMAT, "value": torch.tensor([1.0])}, path)
    before = path.read_bytes()

    real_save = torch.save

    def crashing_save(obj, f, *args, **kwargs):
        f.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"format": train.CHECKPOINT_FORMAT, "value": torch.tensor([2.0])}, path)
    monkeypatch.setattr(torch, "save", real_save)

    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]
    assert torch.equal(load_checkpoint(path)["value"], torch.tensor([1.0]))


def test_checkpoint_loads_with_weights_only(tmp_path):
    model, opt, loader = _setup()
    ckpt = tmp_path / "w.pt"
    fit(model, loader, loss_fn=nn.functional.mse_loss, optimizer=opt, epochs=1, device="cpu",
        checkpoint_path=ckpt, progress=False, config={"lr": 1e-2})
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == 1 and state["finished"]
    assert state["config_hash"] == config_hash({"lr": 1e-2})
    assert set(state["rng"]) >= {"python", "numpy", "torch", "loader"}
    assert len(state["rng"]["loader"]) == 1
    _assert_same_weights(model, _load_into_fresh(state))


def _load_into_fresh(state) -> nn.Module:
    fresh = _model()
    fresh.load_state_dict(state["model"])
    return fresh


def test_not_a_checkpoint_raises_clear_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(bad)


def test_load_or_train_skips_when_matching_and_retrains_on_mismatch(tmp_path, monkeypatch):
    ckpt = tmp_path / "ae.pt"
    config = {"model": "tiny", "lr": 1e-2}
    model, opt, loader = _setup()
    hist = load_or_train(model, loader, checkpoint_path=ckpt, config=config, epochs=2,
                         optimizer=opt, loss_fn=nn.functional.mse_loss, progress=False)
    assert hist.trained and len(hist.epochs) == 2

    calls = []
    real_fit = train.fit

    def counting_fit(*args, **kwargs):
        calls.append(kwargs)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(train, "fit", counting_fit)

    fresh, opt2, loader2 = _setup(seed=3)
    hist2 = load_or_train(fresh, loader2, checkpoint_path=ckpt, config=config, epochs=2,
                          optimizer=opt2, loss_fn=nn.functional.mse_loss, progress=False)
    assert not hist2.trained and calls == []
    _assert_same_weights(model, fresh)
    assert hist2.to_frame()["loss"].tolist() == hist.to_frame()["loss"].tolist()

    # Another configuration: never load the stale weights, retrain from scratch.
    other, opt3, loader3 = _setup(seed=4)
    hist3 = load_or_train(other, loader3, checkpoint_path=ckpt, config={**config, "lr": 1e-3},
                          epochs=2, optimizer=opt3, loss_fn=nn.functional.mse_loss, progress=False)
    assert hist3.trained and len(calls) == 1 and calls[0]["resume"] is False
    assert len(hist3.epochs) == 2
    assert load_checkpoint(ckpt)["config_hash"] == config_hash({**config, "lr": 1e-3, "epochs": 2})

    # force_train: trains although the checkpoint matches.
    again, opt4, loader4 = _setup(seed=5)
    hist4 = load_or_train(again, loader4, checkpoint_path=ckpt, config={**config, "lr": 1e-3},
                          epochs=2, optimizer=opt4, loss_fn=nn.functional.mse_loss,
                          progress=False, force_train=True)
    assert hist4.trained and len(calls) == 2 and len(hist4.epochs) == 2


def test_config_hash_is_order_independent_and_sensitive():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_select_device():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="Unknown DEVICE"):
        select_device("tpu")
    assert issubclass(DeviceError, ValueError)
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            select_device("cuda")


def test_select_device_cuda_without_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        select_device("cuda")
    assert select_device("auto") == torch.device("cpu")


def test_seed_everything_repeats_all_generators():
    seed_everything(11)
    first = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    seed_everything(11)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == first


def test_fit_argument_errors():
    model, opt, loader = _setup()
    with pytest.raises(ValueError, match="loss_fn"):
        fit(model, loader, optimizer=opt, epochs=1, progress=False)
    with pytest.raises(ValueError, match="checkpoint_every"):
        fit(model, loader, loss_fn=nn.functional.mse_loss, optimizer=opt, epochs=1,
            checkpoint_every=0, progress=False)


def test_history_frame_and_early_stop():
    model, opt, loader = _setup()
    hist = fit(model, loader, loss_fn=nn.functional.mse_loss, optimizer=opt, epochs=5,
               progress=False, on_epoch_end=lambda epoch, h: epoch == 1)
    frame = hist.to_frame("epoch")
    assert len(frame) == 2 and {"loss", "lr", "seconds"} <= set(frame.columns)
    assert len(hist.to_frame("step")) == 2 * len(loader)
    assert hist.train_seconds > 0


def test_amp_on_cpu_warns_and_trains_in_float32():
    model, opt, loader = _setup()
    with pytest.warns(UserWarning, match="CUDA"):
        hist = fit(model, loader, loss_fn=nn.functional.mse_loss, optimizer=opt, epochs=1,
                   device="cpu", amp=True, progress=False)
    assert np.isfinite(hist.to_frame()["loss"]).all()
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_tensor_step_values_become_float_rows_without_per_step_sync(monkeypatch):
    """Steps may log detached tensors (no host sync per step); History rows hold floats."""
    model, _, loader = _setup()
    loader = list(loader)  # (a DataLoader and Adam call .item() themselves)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    logged: list[dict[str, float]] = []

    def step(model, batch, ctx):
        (x,) = batch
        loss = nn.functional.mse_loss(model(x), x)
        ctx.backward_step(loss, "main")
        out = {"loss": loss.detach(), "twice": 2 * loss.detach(), "const": 1}
        if ctx.step % 2:
            out["odd"] = torch.tensor(float("nan"))  # a skipped value
        logged.append({k: float(v) for k, v in out.items()})
        return out

    calls = []
    real_item = torch.Tensor.item

    def counting_item(self):
        calls.append(1)
        return real_item(self)

    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    hist = fit(model, loader, optimizer=opt, step_fn=step, epochs=2, progress=False)
    monkeypatch.undo()
    assert not calls  # converted in one transfer per epoch, never .item() per step
    assert len(hist.steps) == 2 * len(loader)
    for row, expected in zip(hist.steps, logged, strict=True):
        assert all(type(v) in (int, float) for v in row.values()), row
        assert row["loss"] == pytest.approx(expected["loss"])
        assert row["twice"] == pytest.approx(2 * row["loss"]) and row["const"] == 1.0
    first = [r for r in hist.steps if r["epoch"] == 0]
    assert hist.epochs[0]["loss"] == pytest.approx(np.mean([r["loss"] for r in first]))
    assert np.isnan(hist.epochs[0]["odd"])  # only NaN values: the epoch mean is NaN
    hist2 = fit(model, loader, optimizer=opt, epochs=1, progress=False,
                step_fn=lambda m, b, ctx: nn.functional.mse_loss(m(b[0]), b[0]))
    assert all(isinstance(r["loss"], float) for r in hist2.steps)
    with pytest.raises(ValueError, match="scalar"):
        fit(model, loader, optimizer=opt, epochs=1, progress=False,
            step_fn=lambda m, b, ctx: {"loss": m(b[0])})


def test_killed_checkpoint_write_leaves_a_temporary_that_the_next_start_removes(tmp_path, capsys) -> None:
    """A SIGKILL during save_checkpoint leaves '.<name>.<random>.tmp'; the next fit removes it and says so."""
    torch.manual_seed(0)
    x = torch.rand(8, 3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=4)
    ckpt = tmp_path / "model.pt"
    stale = tmp_path / ".model.pt.k1ll3d.tmp"
    stale.write_bytes(b"\0" * 4096)
    other = tmp_path / "notes.tmp"  # not ours: never touched
    other.write_text("keep")
    model = nn.Linear(3, 3)
    fit(model, loader, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), epochs=1,
        loss_fn=nn.functional.mse_loss, checkpoint_path=ckpt, progress=False)
    assert not stale.exists() and other.exists() and ckpt.exists()
    assert "removed stale temporary file" in capsys.readouterr().out
    assert not list(tmp_path.glob(".model.pt.*.tmp"))  # the new write left nothing behind


def test_every_step_gets_the_context_one_protocol() -> None:
    """fit calls step_fn(model, batch, ctx) always; a two-argument step is refused by Python itself."""
    x = torch.rand(8, 3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=4)
    model = nn.Linear(3, 3)
    seen = []

    def step(m, batch, ctx):
        seen.append((ctx.epoch, ctx.step, ctx.batch_index))
        return nn.functional.mse_loss(m(batch[0]), batch[0])

    fit(model, loader, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), epochs=2, step_fn=step,
        progress=False)
    assert seen == [(0, 0, 0), (0, 1, 1), (1, 2, 0), (1, 3, 1)]
    with pytest.raises(TypeError, match="positional argument"):
        fit(model, loader, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), epochs=1,
            step_fn=lambda m, b: nn.functional.mse_loss(m(b[0]), b[0]), progress=False)
