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
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from adlib.checkpoints import (  # noqa: F401 - re-exported: adlib.train is where users look
    CHECKPOINT_FORMAT,
    CheckpointError,
    clean_stale_temporaries,
    get_rng_state,
    load_checkpoint,
    restore_state,
    save_checkpoint,
    set_rng_state,
)
from adlib.history import History
from adlib.runtime import DeviceError, seed_everything, select_device  # noqa: F401 - re-exported


def config_hash(config: Mapping[str, Any]) -> str:
    """A short, stable hash of a JSON-able configuration (key order does not matter).

    Paths, tuples and other objects are hashed through ``str()``.
    """
    text = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


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


def default_step(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> StepFn:
    """The autoencoder step ``loss_fn(model(x), x)`` in fit's one step protocol."""

    def step(model: nn.Module, batch: Any, ctx: StepContext) -> torch.Tensor:
        x = batch_input(batch)  # the model input: the tensor, or batch["image"]
        with ctx.autocast():  # float16 forward under AMP, a no-op otherwise
            return loss_fn(model(x), x)  # reconstruct the input and compare with it

    return step


def _resume(
    ckpt: Path, run_hash: str | None, model: nn.Module, optimizers: dict[str, torch.optim.Optimizer],
    schedulers: dict[str, Any], scaler: Any, loader: Any, epochs: int,
) -> tuple[History, int]:
    """The history and next epoch of a matching checkpoint (``(History(), 0)`` otherwise)."""
    state = load_checkpoint(ckpt)
    if run_hash is not None and state.get("config_hash") != run_hash:
        print(f"Checkpoint {ckpt} was written for another configuration "
              f"({state.get('config_hash')} != {run_hash}); training from scratch.")
        return History(), 0
    restore_state(state, model, optimizers, schedulers, scaler)
    set_rng_state(state["rng"], loader)
    start = int(state["epoch"])
    if start < epochs:
        print(f"Resuming from {ckpt} after epoch {start}/{epochs}.")
    return History.from_state_dict(state["history"]), start


def _checkpoint_state(
    *, epoch_done: int, epochs: int, finished: bool, run_hash: str | None,
    config: Mapping[str, Any] | None, model: nn.Module, optimizers: dict[str, torch.optim.Optimizer],
    schedulers: dict[str, Any], scaler: Any, history: History, loader: Any,
) -> dict[str, Any]:
    """Everything a checkpoint holds (weights, optimizers, schedulers, history, RNG states)."""
    return {
        "format": CHECKPOINT_FORMAT, "epoch": epoch_done, "epochs": epochs, "finished": finished,
        "config_hash": run_hash,
        "config": json.dumps(config, sort_keys=True, default=str) if config is not None else None,
        "model": model.state_dict(),
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
        "scaler": scaler.state_dict() if scaler is not None else None,
        "history": history.state_dict(), "rng": get_rng_state(loader),
        "torch_version": str(torch.__version__),
    }


def _step_values(out: Any, ctx: StepContext) -> dict[str, float | torch.Tensor]:
    """Apply a step's result: a loss tensor is back-propagated here, a dict was already applied."""
    if isinstance(out, torch.Tensor):
        if len(ctx.optimizers) != 1:
            raise ValueError(f"step_fn returned a loss tensor but fit() has {len(ctx.optimizers)} "
                             "optimizers; do the updates in step_fn and return a dict of floats.")
        ctx.backward_step(out, next(iter(ctx.optimizers.values())))
        return {"loss": _step_value("loss", out)}
    if isinstance(out, Mapping):
        return {k: _step_value(k, v) for k, v in out.items()}
    raise TypeError(f"step_fn must return a tensor or a dict, not {type(out).__name__}")


def _run_epoch(
    model: nn.Module, loader: Iterable, step: StepFn, *, epoch: int, first_step: int,
    device: torch.device, optimizers: dict[str, torch.optim.Optimizer], scaler: Any, amp: bool,
) -> list[dict[str, Any]]:
    """One pass over ``loader``: a row per step (values stay tensors until the epoch ends)."""
    model.train()
    rows: list[dict[str, Any]] = []
    for batch_index, batch in enumerate(loader):
        batch = _to_device(batch, device)  # non-blocking copy on CUDA
        ctx = StepContext(epoch, first_step + len(rows), batch_index, device, optimizers, scaler, amp)
        values = _step_values(step(model, batch, ctx), ctx)  # forward, backward, update
        rows.append({"epoch": epoch, "step": ctx.step, **values})  # no host sync per step
    _rows_to_float(rows)  # one transfer per device for the whole epoch
    return rows


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
        step_fn: custom step ``step_fn(model, batch, ctx)`` (:class:`StepContext`), the one step
            protocol. Returning a loss **tensor** lets fit do ``zero_grad``/``backward``/
            ``step`` with the single optimizer; returning a **dict** means the step did its own
            updates (several optimizers) and the dict is logged. Logged values may be
            one-element tensors (e.g. ``loss.detach()``): they are converted to floats once per
            epoch, not per step (no host sync per step on GPU).
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
    step = step_fn if step_fn is not None else default_step(loss_fn)
    run_hash = config_hash(config) if config is not None else None

    model.to(device)
    history, start_epoch = History(), 0
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    if ckpt is not None:
        clean_stale_temporaries(ckpt)
        if resume and ckpt.exists():
            history, start_epoch = _resume(ckpt, run_hash, model, optimizers, schedulers, scaler,
                                           train_loader, epochs)

    def save(epoch_done: int, finished: bool) -> None:
        if ckpt is not None:
            save_checkpoint(_checkpoint_state(
                epoch_done=epoch_done, epochs=epochs, finished=finished, run_hash=run_hash,
                config=config, model=model, optimizers=optimizers, schedulers=schedulers,
                scaler=scaler, history=history, loader=train_loader), ckpt)

    bar = tqdm(range(start_epoch, epochs), total=epochs, initial=start_epoch, desc=desc,
               unit="epoch", disable=not progress, dynamic_ncols=True)
    if history.epochs:
        bar.set_postfix(_postfix(history.epochs[-1]))
    try:
        for epoch in bar:
            t0 = time.perf_counter()
            first = history.steps[-1]["step"] + 1 if history.steps else 0
            rows = _run_epoch(model, train_loader, step, epoch=epoch, first_step=int(first),
                              device=device, optimizers=optimizers, scaler=scaler, amp=amp)
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
            restore_state(state, model, _as_optimizers(optimizer), {}, None)
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
