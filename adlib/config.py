"""Paths, profiles and environment settings shared by every notebook.

Nothing here touches the disk at import time.
"""

from __future__ import annotations

import os
from pathlib import Path

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
        raise ValueError(
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


def pick(profile: str, table: dict[str, dict], override: dict | None = None) -> dict:
    """Look up a profile's settings in ``table`` and apply non-``None`` overrides.

    Example:
        >>> pick("smoke", {"smoke": {"epochs": 1}, "cpu": {"epochs": 20}, "paper": {"epochs": 1000}},
        ...      {"epochs": None})
        {'epochs': 1}
    """
    profile = resolve_profile(profile)
    if profile not in table:
        raise KeyError(f"No settings for profile {profile!r}; the table has {sorted(table)}")
    settings = dict(table[profile])
    for key, value in (override or {}).items():
        if value is not None:
            settings[key] = value
    return settings
