"""Data root and profile lookup (GUIDE section 3)."""

from pathlib import Path

import pytest

from adlib import config


def test_data_root_prefers_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ADLIB_DATA", str(tmp_path))
    assert config.data_root() == tmp_path.resolve()
    assert config.synthetic_root() == tmp_path.resolve() / "synthetic"


def test_data_root_defaults_to_repository_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ADLIB_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # never the working directory
    top = config.repo_root()
    assert top is not None and (top / "pyproject.toml").is_file()
    assert config.data_root() == top / "data"


