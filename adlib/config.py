"""Paths, profiles and environment settings shared by every notebook.

Nothing here touches the disk at import time.
"""

from __future__ import annotations

import ast
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

PROFILES: tuple[str, ...] = ("smoke", "cpu", "paper")
"""Run profiles: ``smoke`` (CI, seconds), ``cpu`` (laptop, minutes), ``paper`` (seed settings, GPU)."""


def resolve_profile(profile: str | None = None) -> str:
    """Return a validated profile name.

    Args:
        profile: explicit name, or ``None`` to read ``$ADLIB_PROFILE`` (default ``"cpu"``).

    Raises:
        ValueError: if the name is not one of :data:`PROFILES`.
    """
    name = (profile if profile is not None else os.environ.get("ADLIB_PROFILE", "cpu")).strip().lower()
    if name not in PROFILES:
        raise SettingsError(
            f"Unknown profile {name!r}: expected one of {', '.join(PROFILES)} "
            "(set ADLIB_PROFILE or the PROFILE parameter)."
        )
    return name


def repo_root() -> Path | None:
    """The repository top (the folder holding ``pyproject.toml`` for adlib), if adlib runs from a checkout."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "pyproject.toml"
        if candidate.is_file() and 'name = "adlib"' in candidate.read_text(encoding="utf-8", errors="ignore"):
            return parent
    return None


def data_root() -> Path:
    """Root folder for datasets: ``$ADLIB_DATA`` if set, else ``data/`` at the repository top.

    Outside a checkout (a plain ``pip install``), falls back to ``~/.cache/adlib/data``.
    Never the working directory.
    """
    env = os.environ.get("ADLIB_DATA")
    if env:
        return Path(env).expanduser().resolve()
    top = repo_root()
    if top is not None:
        return top / "data"
    return Path.home() / ".cache" / "adlib" / "data"


def synthetic_root() -> Path:
    """Where synthetic stand-in datasets are generated and cached (``<data root>/synthetic``)."""
    return data_root() / "synthetic"


# --------------------------------------------------------------------------- strict settings


class SettingsError(ValueError):
    """A notebook parameter or pipeline setting that cannot be used; the message names the fix."""



_POSITIVE_INT = ("epochs", "image_size", "batch_size", "latent_dim", "patch_size")
"""Settings that must be integers >= 1 (also every integer key ending in ``_epochs``, ``_size``,
``_sizes`` or ``_dim``)."""
_POSITIVE_SUFFIXES = ("_epochs", "_size", "_sizes", "_dim")


def _parse_text(key: str, value: str) -> Any:
    """A value given as text (``papermill -p KEY '[50, 100]'``) -> a Python literal, or the text."""
    try:
        return ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        return value


def _coerce(key: str, value: Any, like: Any, name: str) -> Any:
    """``value`` in the type of the profile's ``like`` (lists element-wise), or SettingsError."""
    fix = f"Fix: pass {name} as {type(like).__name__}, like the profile's {like!r}."
    if like is None:  # no profile value to compare with: parse text literals, keep the rest
        return _parse_text(key, value) if isinstance(value, str) else value
    if isinstance(value, str) and not isinstance(like, str):
        value = _parse_text(key, value)
    if isinstance(like, bool):
        if isinstance(value, bool):
            return value
        raise SettingsError(f"{name}={value!r} must be True or False. {fix}")
    if isinstance(like, int):
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise SettingsError(f"{name}={value!r} must be an integer. {fix}")
    if isinstance(like, float):
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            return float(value)
        raise SettingsError(f"{name}={value!r} must be a number. {fix}")
    if isinstance(like, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            raise SettingsError(f"{name}={value!r} must be a list, e.g. {list(like)!r}. {fix}")
        if not value:
            raise SettingsError(f"{name}=[] is empty: give at least one value, e.g. {list(like)!r}.")
        if like:
            value = [_coerce(key, v, like[0], f"{name}[{i}]") for i, v in enumerate(value)]
        return type(like)(value)
    if isinstance(like, str) and not isinstance(value, str):
        raise SettingsError(f"{name}={value!r} must be text. {fix}")
    return value


def _check_ranges(cfg: Mapping[str, Any], names: Mapping[str, str]) -> None:
    """Generic ranges: positive counts and sizes, fractions strictly between 0 and 1."""
    for key, value in cfg.items():
        name = names.get(key, key)
        values = value if isinstance(value, (list, tuple)) else [value]
        if key in _POSITIVE_INT or key.endswith(_POSITIVE_SUFFIXES):
            for v in values:
                if isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v < 1:
                    raise SettingsError(f"{name}={value!r}: must be at least 1 "
                                        f"(0 would train or build nothing). Fix: pass a positive integer.")
        if key.endswith("_fraction") and isinstance(value, float) and not 0.0 < value < 1.0:
            raise SettingsError(f"{name}={value!r}: a fraction strictly between 0 and 1 is needed.")


def settings(
    profile: str,
    table: Mapping[str, Mapping[str, Any]],
    overrides: Mapping[str, Any] | None = None,
    *,
    names: Mapping[str, str] | None = None,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The profile's settings with the non-``None`` overrides applied, strictly checked.

    Args:
        profile: ``"smoke" | "cpu" | "paper"``.
        table: the pipeline's ``PROFILES`` table.
        overrides: ``{setting key: value}`` from the notebook parameters (``None`` = keep the
            profile value). Text that holds a literal (``'[50]'``, ``'5'``) is parsed when the
            profile's value is not text; anything else of the wrong type is refused.
        names: ``{setting key: notebook parameter name}`` for the messages (e.g.
            ``{"epochs": "EPOCHS"}``); default: the upper-case key.
        check: the pipeline's own checks, called with the merged settings; raise
            :class:`SettingsError` there.

    Raises:
        SettingsError: an unknown key, a wrong type or an impossible value, naming the
            parameter and the fix.
    """
    name = resolve_profile(profile)
    if name not in table:
        raise SettingsError(f"No settings for PROFILE={name!r}; this pipeline has {sorted(table)}.")
    cfg = dict(table[name])
    labels = {k: (names or {}).get(k, k.upper()) for k in {*cfg, *(overrides or {})}}
    for key, value in (overrides or {}).items():
        if key not in cfg:
            raise SettingsError(f"Unknown setting {labels[key]} ({key!r}); known: {sorted(cfg)}.")
        if value is not None:
            cfg[key] = _coerce(key, value, cfg[key], labels[key])
    _check_ranges(cfg, labels)
    if check is not None:
        check(cfg)
    return cfg


def check_results_dir(results_dir: str | os.PathLike) -> Path:
    """Create ``RESULTS_DIR`` if needed and prove it is writable, before any training.

    Raises:
        SettingsError: naming the folder and the fix.
    """
    path = Path(results_dir).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise SettingsError(
            f"RESULTS_DIR={str(results_dir)!r} cannot be written ({exc.strerror or exc}). "
            "Fix: pass a folder you can write to, e.g. -p RESULTS_DIR results."
        ) from None
    return path
