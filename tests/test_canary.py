"""Canary: CI must run the suite in the fast smoke profile (GUIDE section 5)."""

import os

import pytest

from adlib import config


def test_ci_runs_in_smoke_profile() -> None:
    """Fails when CI runs the suite without ``ADLIB_PROFILE=smoke`` (notebooks would train for real)."""
    if not os.environ.get("CI"):
        pytest.skip("not running under CI")
    assert os.environ.get("ADLIB_PROFILE") == "smoke", "CI must set ADLIB_PROFILE=smoke (use `make test`)"
    assert config.resolve_profile() == "smoke"


def test_resolve_profile_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADLIB_PROFILE", "paper")
    assert config.resolve_profile() == "paper"
    monkeypatch.delenv("ADLIB_PROFILE")
    assert config.resolve_profile() == "cpu"
    with pytest.raises(ValueError, match="Unknown profile"):
        config.resolve_profile("fast")
