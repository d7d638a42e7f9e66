"""Google Colab: the "Open in Colab" badge of every notebook and its Colab-only install lines.

Colab opens a notebook straight from GitHub (``colab.research.google.com/github/<repo>/blob/
<branch>/notebooks/<name>.ipynb``) in a machine that has torch but not adlib, so each notebook's
Setup cell starts with :data:`INSTALL`: when, and only when, it runs inside Colab it installs the
package from the repository with pip; anywhere else the lines do nothing. A fork points the badges
and the install at itself with ``python -m adlib.colab --repo OWNER/NAME``.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from pathlib import Path

__all__ = ["REPOSITORY", "BRANCH", "badge", "install_lines", "apply", "main"]

REPOSITORY = "adlib-course/adlib"
"""``owner/name`` of the course's GitHub repository (badges and the Colab install)."""
BRANCH = "main"
_BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")
_START, _END = "# --- Colab only", "# --- end Colab"


def badge(notebook: str, repo: str = REPOSITORY, branch: str = BRANCH) -> str:
    """The markdown badge that opens ``notebooks/<notebook>.ipynb`` in Colab."""
    url = f"https://colab.research.google.com/github/{repo}/blob/{branch}/notebooks/{notebook}.ipynb"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def install_lines(repo: str = REPOSITORY, branch: str = BRANCH) -> str:
    """The Setup cell's first lines: install adlib from the repository, in Colab only."""
    return (f'{_START}: install the course package (elsewhere `make install` did) ---\n'
            "import subprocess\n"
            "import sys\n\n"
            'if "google.colab" in sys.modules:\n'
            '    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",\n'
            f'                    "adlib @ git+https://github.com/{repo}@{branch}"], check=True)\n'
            f"{_END} ---\n")


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def apply(path: str | Path, repo: str = REPOSITORY, branch: str = BRANCH) -> bool:
    """Put (or update) the badge in the notebook's title cell and the install lines at the top of
    its Setup cell (the first code cell after ``parameters``). Returns True if the file changed."""
    path = Path(path)
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = nb["cells"]
    title = next(c for c in cells if c["cell_type"] == "markdown")
    text, mark = _source(title), badge(path.stem, repo, branch)
    text = _BADGE.sub(mark, text) if _BADGE.search(text) else re.sub(r"^(# .*\n)", rf"\g<1>\n{mark}\n", text, count=1)
    title["source"] = text.splitlines(keepends=True)
    params = next(i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", []))
    setup = next(c for c in cells[params + 1:] if c["cell_type"] == "code")
    code = _source(setup)
    if _START in code:
        code = code[code.index(f"{_END} ---\n") + len(f"{_END} ---\n"):].lstrip("\n")
    setup["source"] = (install_lines(repo, branch) + "\n" + code).splitlines(keepends=True)
    new = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    if new == path.read_text(encoding="utf-8"):
        return False
    path.write_text(new, encoding="utf-8")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m adlib.colab [--repo OWNER/NAME] [--branch B] [notebooks...]``."""
    p = argparse.ArgumentParser(prog="python -m adlib.colab", description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="*", help="default: notebooks/*.ipynb")
    p.add_argument("--repo", default=REPOSITORY)
    p.add_argument("--branch", default=BRANCH)
    args = p.parse_args(argv)
    files = [Path(f) for f in args.notebooks] or sorted(Path("notebooks").glob("*.ipynb"))
    for f in files:
        print(f"{f}: {'updated' if apply(f, args.repo, args.branch) else 'unchanged'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
