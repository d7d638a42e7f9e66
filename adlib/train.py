"""Seeding, device selection and a small, resumable training loop.

The loop (:func:`fit`) is generic: by default it trains an auto-encoder
(``loss_fn(model(x), x)``), and a custom ``step_fn`` lets GANs, VAEs or denoisers plug in their
own step, including several optimizers (f-AnoGAN's critic/generator alternation).

Checkpoints are written atomically (temporary file in the same folder, then ``os.replace``), hold
the model, the optimizers, the history and every random-number state (Python, NumPy, torch, CUDA
and the data loader's generator), and load with ``torch.load(..., weights_only=True)``. A run
stopped after ``k`` epochs and resumed ends with exactly the weights of an uninterrupted run on
the same device (deterministic kernels assumed). :func:`load_or_train` adds the
"load if present" behaviour notebooks need: a finished checkpoint whose configuration hash matches
is loaded instead of retraining; any mismatch retrains.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import math
import os
import random
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

CHECKPOINT_FORMAT = 1


class DeviceError(ValueError):
    """The requested device is not available on this machine."""


class CheckpointError(ValueError):
    """A checkpoint file cannot be used (unreadable, wrong format or for another model)."""


# --------------------------------------------------------------------------- seeding and devices


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch (CPU and all CUDA devices).

    Args:
        seed: the seed.
        deterministic: also ask cuDNN for deterministic kernels (slower on GPU, no effect on CPU).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def select_device(device: str | torch.device = "auto") -> torch.device:
    """Resolve ``"auto"``, ``"cpu"`` or ``"cuda"`` (``"cuda:1"``) to a ``torch.device``.

    Raises:
        DeviceError: ``"cuda"`` was asked for but no CUDA GPU is visible, or the name is unknown.
    """
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"DEVICE={str(device)!r} but no CUDA GPU is visible to torch {torch.__version__}; "
                'set DEVICE = "auto" or "cpu" (or install a CUDA build of torch).'
            )
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"DEVICE={str(device)!r} but only {torch.cuda.device_count()} CUDA device(s) exist."
            )
        return dev
    raise DeviceError(f'Unknown DEVICE={str(device)!r}: expected "auto", "cpu" or "cuda".')


def config_hash(config: Mapping[str, Any]) -> str:
    """A short, stable hash of a JSON-able configuration (key order does not matter).

    Paths, tuples and other objects are hashed through ``str()``.
    """
    text = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# --------------------------------------------------------------------------- history


@dataclass
class History:
    """Training record: one row per optimisation step and one per epoch.

    Step rows hold ``epoch``, ``step`` (global index) and the values the step returned (``loss``
    for the default step). Epoch rows hold ``epoch``, the step values averaged over the epoch,
    validation values (``val_*``), learning rates (``lr``/``lr_<name>``) and ``seconds``.
    """

    steps: list[dict[str, float]] = field(default_factory=list)
    epochs: list[dict[str, float]] = field(default_factory=list)
    trained: bool = True
    """``False`` when :func:`load_or_train` loaded finished weights instead of training."""

    @property
    def train_seconds(self) -> float:
        """Total wall time over all recorded epochs (including those before a resume)."""
        return float(sum(row.get("seconds", 0.0) for row in self.epochs))

    def to_frame(self, per: str = "epoch"):
        """The record as a ``pandas.DataFrame`` (``per="epoch"`` or ``"step"``)."""
        import pandas as pd

        if per not in ("epoch", "step"):
            raise ValueError(f'per must be "epoch" or "step", got {per!r}')
        return pd.DataFrame(self.epochs if per == "epoch" else self.steps)

    to_dataframe = to_frame

    def state_dict(self) -> dict[str, list[dict[str, float]]]:
        """Plain lists/dicts/floats, safe for ``torch.load(weights_only=True)``."""
        return {"steps": [dict(r) for r in self.steps], "epochs": [dict(r) for r in self.epochs]}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> History:
        """Inverse of :meth:`state_dict`."""
        return cls(steps=[dict(r) for r in state["steps"]], epochs=[dict(r) for r in state["epochs"]])

    def plot(self, per: str = "step", **kwargs: Any):
        """Shortcut for :func:`adlib.viz.training_curves`."""
        from adlib.viz import training_curves

        return training_curves(self, per=per, **kwargs)

    def __repr__(self) -> str:
        last = self.epochs[-1] if self.epochs else {}
        shown = ", ".join(f"{k}={v:.4g}" for k, v in last.items() if k not in ("epoch",))
        return f"History({len(self.epochs)} epochs, {len(self.steps)} steps; last: {shown})"


# --------------------------------------------------------------------------- RNG state


def _loader_generators(loader: Any) -> list[torch.Generator]:
    """The ``torch.Generator`` objects that drive a DataLoader's shuffling (deduplicated)."""
    found: list[torch.Generator] = []
    candidates = [
        getattr(loader, "generator", None),
        getattr(getattr(loader, "sampler", None), "generator", None),
        getattr(getattr(getattr(loader, "batch_sampler", None), "sampler", None), "generator", None),
    ]
    for gen in candidates:
        if isinstance(gen, torch.Generator) and all(gen is not g for g in found):
            found.append(gen)
    return found


def get_rng_state(loader: Any = None) -> dict[str, Any]:
    """Every random-number state needed to continue a run identically, as tensors/lists."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {
            "version": int(py_version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss": py_gauss,
        },
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loader": [g.get_state() for g in _loader_generators(loader)] if loader is not None else [],
    }
    return state


def set_rng_state(state: Mapping[str, Any], loader: Any = None) -> None:
    """Restore the states saved by :func:`get_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        (npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["gauss"])
    )
    torch.set_rng_state(state["torch"].cpu())
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])
    if loader is not None:
        gens = _loader_generators(loader)
        saved = state.get("loader") or []
        if len(saved) != len(gens):
            warnings.warn(
                f"The checkpoint holds {len(saved)} data-loader generator state(s) but the loader has "
                f"{len(gens)}; the resumed shuffling order will differ from an uninterrupted run.",
                stacklevel=3,
            )
        for gen, gen_state in zip(gens, saved, strict=False):
            gen.set_state(gen_state.cpu())


# --------------------------------------------------------------------------- checkpoint files


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` with ``torch.save`` atomically.

    The data go to a temporary file in the same folder, are flushed to disk, then renamed over
    ``path`` with ``os.replace``; a crash or ``KeyboardInterrupt`` at any moment leaves either
    the old file or the new one, never a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(dict(state), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`fit` with ``torch.load(weights_only=True)``.

    Raises:
        CheckpointError: the file is unreadable or not an adlib training checkpoint.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name and the fix
        raise CheckpointError(
            f"Cannot read checkpoint {path}: {exc}. Delete the file to retrain from scratch."
        ) from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not an adlib training checkpoint (format {CHECKPOINT_FORMAT}); "
            "delete it to retrain from scratch."
        )
    return state


# --------------------------------------------------------------------------- the loop


@dataclass
class StepContext:
    """What a three-argument ``step_fn(model, batch, ctx)`` receives besides model and batch.

    Attributes:
        epoch: current epoch (0-based).
        step: global step index (0-based, continues across epochs and resumes); use it for
            alternations such as "update the generator every ``n_critic`` steps".
        batch_index: index of the batch within the epoch.
        device: the training device (the batch is already on it).
        optimizers: the optimizers by name (``{"main": opt}`` when a single one was passed).
        scaler: the ``GradScaler`` when mixed precision is on, else ``None``.
        amp: whether mixed precision is on; wrap forward passes in ``ctx.autocast()``.
    """

    epoch: int
    step: int
    batch_index: int
    device: torch.device
    optimizers: dict[str, torch.optim.Optimizer]
    scaler: Any = None
    amp: bool = False

    def autocast(self) -> contextlib.AbstractContextManager:
        """``torch.autocast`` on CUDA when mixed precision is on, else a no-op context."""
        if self.amp:
            return torch.autocast(device_type=self.device.type, dtype=torch.float16)
        return contextlib.nullcontext()

    def backward_step(self, loss: torch.Tensor, optimizer: str | torch.optim.Optimizer) -> None:
        """``zero_grad``, ``backward`` and ``step`` for one optimizer, with loss scaling under AMP."""
        opt = self.optimizers[optimizer] if isinstance(optimizer, str) else optimizer
        opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(opt)
            self.scaler.update()
        else:
            loss.backward()
            opt.step()


StepFn = Callable[..., "torch.Tensor | Mapping[str, float | torch.Tensor]"]


def _to_device(batch: Any, device: torch.device) -> Any:
    non_blocking = device.type == "cuda"
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def batch_input(batch: Any) -> torch.Tensor:
    """The model input of a batch: the tensor itself, the first element of a tuple/list, or
    ``batch["image"]`` for a dict."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, Mapping):
        if "image" in batch:
            return batch["image"]
        for value in batch.values():
            if isinstance(value, torch.Tensor):
                return value
    if isinstance(batch, (list, tuple)) and batch:
        return batch[0]
    raise TypeError(f"Cannot find the input tensor in a batch of type {type(batch).__name__}.")


def _as_optimizers(optimizer: Any) -> dict[str, torch.optim.Optimizer]:
    if optimizer is None:
        return {}
    if isinstance(optimizer, torch.optim.Optimizer):
        return {"main": optimizer}
    if isinstance(optimizer, Mapping):
        return dict(optimizer)
    if isinstance(optimizer, Iterable):
        return {str(i): opt for i, opt in enumerate(optimizer)}
    raise TypeError(f"optimizer must be an Optimizer, a dict or a list of them, not {type(optimizer)}")


def _as_schedulers(scheduler: Any) -> dict[str, Any]:
    if scheduler is None:
        return {}
    if isinstance(scheduler, Mapping):
        return dict(scheduler)
    if isinstance(scheduler, (list, tuple)):
        return {str(i): s for i, s in enumerate(scheduler)}
    return {"main": scheduler}


def _wants_context(step_fn: Callable) -> bool:
    try:
        params = inspect.signature(step_fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [
        p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in params)


def _to_float(value: Any) -> float:
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().item())
    return float(value)


def _step_value(key: str, value: Any) -> float | torch.Tensor:
    """A step's logged value without a host sync: a detached one-element tensor, or a float."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"step value {key!r} has shape {tuple(value.shape)}; log a scalar "
                             "(e.g. loss.detach() or a float).")
        return value.detach()
    return float(value)


def _rows_to_float(rows: list[dict[str, Any]]) -> None:
    """Replace the tensors in step rows by floats, in place: one transfer per device."""
    by_device: dict[torch.device, list[tuple[dict[str, Any], str]]] = {}
    for row in rows:
        for key, value in row.items():
            if isinstance(value, torch.Tensor):
                by_device.setdefault(value.device, []).append((row, key))
    for places in by_device.values():
        values = torch.stack([row[key].reshape(()).float() for row, key in places]).tolist()
        for (row, key), value in zip(places, values, strict=True):
            row[key] = float(value)


def _epoch_means(rows: list[dict[str, float]]) -> dict[str, float]:
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in ("epoch", "step") and k not in keys)
    out = {}
    for key in keys:
        values = [r[key] for r in rows if key in r and not math.isnan(r[key])]  # skipped steps
        out[key] = float(np.mean(values)) if values else float("nan")
    return out


def _val_dict(value: Any) -> dict[str, float]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {(k if k.startswith("val_") else f"val_{k}"): _to_float(v) for k, v in value.items()}
    return {"val_loss": _to_float(value)}


def _learning_rates(optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
    if len(optimizers) == 1:
        (opt,) = optimizers.values()
        return {"lr": float(opt.param_groups[0]["lr"])}
    return {f"lr_{name}": float(opt.param_groups[0]["lr"]) for name, opt in optimizers.items()}


def fit(
    model: nn.Module,
    train_loader: Iterable,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    optimizer: torch.optim.Optimizer | Mapping[str, torch.optim.Optimizer] | None,
    epochs: int,
    device: str | torch.device = "cpu",
    step_fn: StepFn | None = None,
    val_fn: Callable[[nn.Module], float | Mapping[str, float] | None] | None = None,
    scheduler: Any = None,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    resume: bool = True,
    progress: bool = True,
    on_epoch_end: Callable[[int, History], bool | None] | None = None,
    amp: bool = False,
    config: Mapping[str, Any] | None = None,
    desc: str = "train",
) -> History:
    """Train ``model`` for ``epochs`` epochs, with optional atomic checkpoints and resume.

    Args:
        model: the module (use ``nn.ModuleDict`` for several networks, e.g. generator + critic).
        train_loader: iterable of batches (a ``DataLoader``; its shuffling generator is
            checkpointed).
        loss_fn: ``loss_fn(output, target)`` for the default step ``loss_fn(model(x), x)``.
        optimizer: one optimizer, or a dict ``{name: optimizer}`` (all are checkpointed).
        epochs: total number of epochs (a resumed run trains only the missing ones).
        device: where the model and batches go (``"auto"``, ``"cpu"``, ``"cuda"`` or a device).
        step_fn: custom step. ``step_fn(model, batch)`` or ``step_fn(model, batch, ctx)``
            (:class:`StepContext`). Returning a loss **tensor** lets fit do ``zero_grad``/
            ``backward``/``step`` with the single optimizer; returning a **dict** of floats
            means the step did its own updates (several optimizers) and the dict is logged.
            Logged values may be one-element tensors (e.g. ``loss.detach()``): they are
            converted to floats once per epoch, not per step (no host sync per step on GPU).
        val_fn: ``val_fn(model) -> float | dict`` run after each epoch under ``torch.no_grad()``
            with the model in eval mode; logged as ``val_loss`` / ``val_<key>``.
        scheduler: LR scheduler(s), stepped once per epoch (``ReduceLROnPlateau`` gets
            ``val_loss`` when present, else the training loss) and checkpointed.
        checkpoint_path: file for checkpoints; ``None`` disables checkpoints and resume.
        checkpoint_every: save every N epochs (the last epoch is always saved).
        resume: continue from ``checkpoint_path`` when it exists (and its config hash matches).
        progress: show a ``tqdm.auto`` bar over epochs with the losses in the postfix.
        on_epoch_end: ``callback(epoch, history)`` after each epoch, before the checkpoint is
            written; return ``True`` to stop early.
        amp: mixed precision (float16 autocast + GradScaler); CUDA only, ignored with a warning
            on CPU.
        config: settings that define the run; their :func:`config_hash` is stored in the
            checkpoint, and a checkpoint with another hash is not resumed (training restarts).
        desc: label of the progress bar.

    Returns:
        The :class:`History` (including the epochs before a resume).

    A ``KeyboardInterrupt`` stops training and is re-raised; the last checkpoint stays valid
    (written atomically) and the next call resumes from it.
    """
    from tqdm.auto import tqdm

    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    device = select_device(device)
    optimizers = _as_optimizers(optimizer)
    schedulers = _as_schedulers(scheduler)
    if step_fn is None:
        if loss_fn is None:
            raise ValueError("fit() needs loss_fn for the default step (or pass step_fn).")
        if len(optimizers) != 1:
            raise ValueError("The default step needs exactly one optimizer; pass step_fn for several.")
    if amp and device.type != "cuda":
        warnings.warn("Mixed precision (amp=True) is only used on CUDA; training in float32.", stacklevel=2)
        amp = False
    scaler = torch.amp.GradScaler("cuda") if amp else None
    wants_ctx = step_fn is not None and _wants_context(step_fn)
    run_hash = config_hash(config) if config is not None else None

    model.to(device)
    history = History()
    start_epoch = 0
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None

    if ckpt is not None and resume and ckpt.exists():
        state = load_checkpoint(ckpt)
        if run_hash is not None and state.get("config_hash") != run_hash:
            print(
                f"Checkpoint {ckpt} was written for another configuration "
                f"({state.get('config_hash')} != {run_hash}); training from scratch."
            )
        else:
            _restore(state, model, optimizers, schedulers, scaler)
            history = History.from_state_dict(state["history"])
            start_epoch = int(state["epoch"])
            set_rng_state(state["rng"], train_loader)
            if start_epoch < epochs:
                print(f"Resuming from {ckpt} after epoch {start_epoch}/{epochs}.")

    def save(epoch_done: int, finished: bool) -> None:
        if ckpt is None:
            return
        save_checkpoint(
            {
                "format": CHECKPOINT_FORMAT,
                "epoch": epoch_done,
                "epochs": epochs,
                "finished": finished,
                "config_hash": run_hash,
                "config": json.dumps(config, sort_keys=True, default=str) if config is not None else None,
                "model": model.state_dict(),
                "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
                "scaler": scaler.state_dict() if scaler is not None else None,
                "history": history.state_dict(),
                "rng": get_rng_state(train_loader),
                "torch_version": str(torch.__version__),
            },
            ckpt,
        )

    global_step = history.steps[-1]["step"] + 1 if history.steps else 0
    bar = tqdm(
        range(start_epoch, epochs),
        total=epochs,
        initial=start_epoch,
        desc=desc,
        unit="epoch",
        disable=not progress,
        dynamic_ncols=True,
    )
    if history.epochs:
        bar.set_postfix(_postfix(history.epochs[-1]))
    try:
        for epoch in bar:
            model.train()
            t0 = time.perf_counter()
            rows: list[dict[str, float]] = []
            for batch_index, batch in enumerate(train_loader):
                batch = _to_device(batch, device)
                ctx = StepContext(epoch, global_step, batch_index, device, optimizers, scaler, amp)
                if step_fn is None:
                    x = batch_input(batch)
                    with ctx.autocast():
                        out = loss_fn(model(x), x)
                elif wants_ctx:
                    out = step_fn(model, batch, ctx)
                else:
                    out = step_fn(model, batch)
                if isinstance(out, torch.Tensor):
                    if len(optimizers) != 1:
                        raise ValueError(
                            "step_fn returned a loss tensor but fit() has "
                            f"{len(optimizers)} optimizers; do the updates in step_fn and "
                            "return a dict of floats."
                        )
                    ctx.backward_step(out, next(iter(optimizers.values())))
                    values = {"loss": _step_value("loss", out)}
                elif isinstance(out, Mapping):
                    values = {k: _step_value(k, v) for k, v in out.items()}
                else:
                    raise TypeError(f"step_fn must return a tensor or a dict, not {type(out).__name__}")
                # tensors stay on the device until the epoch ends: no host sync per step
                rows.append({"epoch": epoch, "step": global_step, **values})
                global_step += 1
            _rows_to_float(rows)
            record: dict[str, float] = {"epoch": epoch, **_epoch_means(rows)}
            if val_fn is not None:
                model.eval()
                with torch.no_grad():
                    record.update(_val_dict(val_fn(model)))
                model.train()
            record.update(_learning_rates(optimizers))
            _step_schedulers(schedulers, record)
            record["seconds"] = time.perf_counter() - t0
            history.steps.extend(rows)
            history.epochs.append(record)
            bar.set_postfix(_postfix(record))
            stop = bool(on_epoch_end(epoch, history)) if on_epoch_end is not None else False
            done = epoch + 1
            if stop or done == epochs or done % checkpoint_every == 0:
                save(done, finished=stop or done == epochs)
            if stop:
                break
    except KeyboardInterrupt:
        if ckpt is not None and ckpt.exists():
            print(f"Interrupted. The last checkpoint {ckpt} is intact; run again to resume.")
        raise
    finally:
        bar.close()
    return history


def _postfix(record: Mapping[str, float]) -> dict[str, str]:
    skip = {"epoch", "seconds"}
    return {k: f"{v:.4g}" for k, v in record.items() if k not in skip and not k.startswith("lr")}


def _step_schedulers(schedulers: dict[str, Any], record: Mapping[str, float]) -> None:
    for sched in schedulers.values():
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            metric = record.get("val_loss", record.get("loss"))
            if metric is not None:
                sched.step(metric)
        else:
            sched.step()


def _restore(
    state: Mapping[str, Any],
    model: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    schedulers: dict[str, Any],
    scaler: Any,
) -> None:
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"The checkpoint does not fit this model ({exc}); delete it or pass another path."
        ) from exc
    saved_opts = state.get("optimizers", {})
    if optimizers and set(saved_opts) != set(optimizers):
        raise CheckpointError(
            f"The checkpoint holds optimizers {sorted(saved_opts)} but fit() got {sorted(optimizers)}."
        )
    for name, opt in optimizers.items():
        opt.load_state_dict(saved_opts[name])
    for name, sched in schedulers.items():
        if name in state.get("schedulers", {}):
            sched.load_state_dict(state["schedulers"][name])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])


def load_or_train(
    model: nn.Module,
    train_loader: Iterable,
    *,
    checkpoint_path: str | os.PathLike,
    config: Mapping[str, Any],
    epochs: int,
    force_train: bool = False,
    optimizer: torch.optim.Optimizer | Mapping[str, torch.optim.Optimizer] | None = None,
    device: str | torch.device = "cpu",
    **fit_kwargs: Any,
) -> History:
    """Load a finished checkpoint when it matches ``config``, else train (resuming if possible).

    The configuration hash covers ``config`` plus ``epochs``: a checkpoint trained with other
    settings is never loaded; training restarts from scratch and overwrites it.

    Args:
        model: the freshly built module (weights are loaded into it in place).
        train_loader, optimizer, device, **fit_kwargs: passed to :func:`fit`.
        checkpoint_path: the checkpoint file.
        config: everything that defines the trained weights (model settings, data, seed ...).
        epochs: number of epochs.
        force_train: train from scratch even when a matching checkpoint exists (smoke profile).

    Returns:
        The :class:`History`; ``history.trained`` is ``False`` when the weights were loaded.
    """
    path = Path(checkpoint_path)
    full_config = {**dict(config), "epochs": epochs}
    wanted = config_hash(full_config)
    resume = not force_train
    if path.exists() and not force_train:
        try:
            state = load_checkpoint(path)
        except CheckpointError as exc:
            print(f"{exc} Training from scratch.")
            state = None
            resume = False
        if state is not None and state.get("config_hash") == wanted and state.get("finished"):
            dev = select_device(device)
            model.to(dev)
            _restore(state, model, _as_optimizers(optimizer), {}, None)
            history = History.from_state_dict(state["history"])
            history.trained = False
            print(
                f"Loaded trained weights from {path} ({state['epoch']} epochs, "
                f"{history.train_seconds:.0f} s of training); pass force_train=True or delete "
                "the file to retrain."
            )
            return history
        if state is not None and state.get("config_hash") != wanted:
            print(f"{path} was trained with another configuration; retraining from scratch.")
            resume = False
    history = fit(
        model,
        train_loader,
        optimizer=optimizer,
        epochs=epochs,
        device=device,
        checkpoint_path=path,
        resume=resume,
        config=full_config,
        **fit_kwargs,
    )
    return history
