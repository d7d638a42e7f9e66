"""Every notebook opens in Colab: a badge to itself, and a Setup cell that installs adlib there only."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from adlib import colab

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _setup_code(cells: list[dict]) -> str:
    params = next(i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", []))
    return "".join(next(c for c in cells[params + 1:] if c["cell_type"] == "code")["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_badge_and_colab_install(path: Path) -> None:
    cells = _cells(path)
    title = "".join(next(c for c in cells if c["cell_type"] == "markdown")["source"])
    assert colab.badge(path.stem) in title, f"{path.name}: run `python -m adlib.colab` to add the badge"
    code = _setup_code(cells)
    assert code.startswith(colab.install_lines()), f"{path.name}: Setup cell lacks the Colab install lines"
    first_import = min(i for i in (code.find("import adlib"), code.find("from adlib")) if i >= 0)
    assert code.index('"google.colab" in sys.modules') < first_import


def test_install_lines_run_pip_in_colab_only(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, check: calls.append(cmd))
    exec(colab.install_lines(), {})  # not in Colab: nothing happens
    assert calls == []
    monkeypatch.setitem(sys.modules, "google.colab", object())
    exec(colab.install_lines(), {})
    assert calls and calls[0][1:4] == ["-m", "pip", "install"]
    assert f"git+https://github.com/{colab.REPOSITORY}@{colab.BRANCH}" in calls[0][-1]


def test_apply_is_idempotent_and_retargets(tmp_path: Path) -> None:
    nb = tmp_path / NOTEBOOKS[0].name
    shutil.copy(NOTEBOOKS[0], nb)
    colab.apply(nb)
    assert colab.apply(nb) is False  # a second run changes nothing
    assert colab.apply(nb, repo="someone/fork") is True
    cells = _cells(nb)
    text = "".join(cells[0]["source"]) + _setup_code(cells)
    assert "someone/fork" in text and colab.REPOSITORY not in text
    assert text.count("Open In Colab") == 1 and _setup_code(cells).count("Colab only") == 1


def test_readme_table_has_every_badge() -> None:
    readme = (NOTEBOOKS[0].parents[1] / "README.md").read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        assert colab.badge(path.stem) in readme, f"README: no Colab badge for {path.stem}"
