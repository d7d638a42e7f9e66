"""Every course notebook follows the template and the parameter contract (GUIDE sections 1 and 5)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
MODEL_PARAMETERS = {"PROFILE", "DATA_ROOT", "CATEGORY", "IMAGE_SIZE", "EPOCHS", "SEED", "DEVICE", "RESULTS_DIR"}


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _parameter_names(source: str) -> set[str]:
    """Names assigned in a parameters cell; fails on anything but literals (and ``os.environ.get``)."""
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Import) and [a.name for a in node.names] == ["os"]:
            continue
        assert isinstance(node, (ast.Assign, ast.AnnAssign)), f"not an assignment: {ast.dump(node)[:80]}"
        value = node.value
        is_env = (
            isinstance(value, ast.Call)
            and ast.unparse(value.func) == "os.environ.get"
            and all(isinstance(a, ast.Constant) for a in value.args)
        )
        if not is_env:
            ast.literal_eval(value)  # raises ValueError for anything that is not a literal
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_template(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = nb["cells"]
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3"
    assert cells[0]["cell_type"] == "markdown" and _source(cells[0]).startswith("# "), "first cell: '# Title'"
    headings = [_source(c) for c in cells if c["cell_type"] == "markdown"]
    text = "\n".join(headings)
    assert re.search(r"^## Setup", text, re.M), "missing '## Setup' section"
    assert re.search(r"^## 1\.", text, re.M), "missing numbered sections ('## 1. ...')"
    assert re.search(r"^## Takeaways", text, re.M), "missing '## Takeaways' section"
    code = "\n".join(_source(c) for c in cells if c["cell_type"] == "code")
    assert "notebook.setup(" in code, "the Setup section must call adlib.notebook.setup(...)"
    for forbidden in ("sys.path", "os.chdir"):
        assert forbidden not in code, f"{forbidden} hacks are not allowed in notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_outputs_committed(path: Path) -> None:
    for cell in _cells(path):
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{path.name}: outputs must be stripped"
            assert cell.get("execution_count") is None, f"{path.name}: execution counts must be stripped"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_single_literal_parameters_cell(path: Path) -> None:
    tagged = [c for c in _cells(path) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: want exactly one cell tagged 'parameters', found {len(tagged)}"
    names = _parameter_names(_source(tagged[0]))
    assert {"PROFILE", "SEED", "DATA_ROOT"} <= names
    if not path.name.startswith(("00_", "05_")):
        missing = MODEL_PARAMETERS - names
        assert not missing, f"{path.name}: parameters cell lacks {sorted(missing)}"


def test_parameter_check_rejects_side_effects() -> None:
    with pytest.raises((AssertionError, ValueError)):
        _parameter_names("X = open('f').read()")
    assert _parameter_names("import os\nPROFILE = os.environ.get('ADLIB_PROFILE', 'cpu')\nSEED = 0") == {"PROFILE", "SEED"}
