"""Run the course notebooks headless and build an HTML report.

``python -m adlib.report`` (or ``adlib report``) executes every ``notebooks/NN_*.ipynb`` in
order with papermill, passing ``PROFILE`` and an absolute ``RESULTS_DIR`` as parameters (and
``ADLIB_PROFILE`` in the environment), then writes::

    reports/<profile>/NN_name.ipynb       executed notebooks (outputs kept)
    reports/<profile>/NN_name.html        the same, as HTML
    reports/<profile>/results/            RESULTS_DIR shared by every run
    reports/<profile>/index.html          status, duration and error of each run, the results of
                                          this run (mean ± sd over seeds, n), older results flagged,
                                          and the comparison notebook's tables
    reports/<profile>/summary.json        the same, machine readable

A failing notebook is reported and the others still run; the exit status is 1 if any failed.

Parameter sweeps (``--params sweep.yaml``)::

    parameters:                 # optional: applied to every run
      DATA_ROOT: /data/mvtec
    runs:                       # extra runs; a notebook listed here runs once per entry
      - notebook: "01"          # a notebook stem or its NN prefix
        name: hazelnut          # output copy: 01_<...>-hazelnut.ipynb
        parameters: {CATEGORY: hazelnut}
      - notebook: "01"
        categories: auto        # one run per MVTec category found under DATA_ROOT
                                # (or an explicit list: [bottle, screw])

Notebooks not named in ``runs`` run once with the shared parameters. All runs share one
RESULTS_DIR, so the comparison notebook (which runs last, after every numbered notebook) sees every result.
The report records its start in ``RESULTS_DIR/.report-run.json``: the index and the comparison
notebook show the results written since then, and list older files in the folder with their
date instead of mixing them in. Runs that differ only in ``SEED`` are averaged (mean ± sd, n). The
comparison notebook may write HTML fragments to ``RESULTS_DIR/comparison/*.html``; the index
page embeds them under "Comparison tables".

Nothing here imports papermill or nbconvert until a report actually runs.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adlib.report_index import (  # noqa: F401 - the index page lives in its own module
    _fmt_seconds,
    _short_params,
    comparison_fragments,
    record_start,
    results_overview,
    write_index,
)

__all__ = ["NotebookRun", "ReportError", "RunResult", "main", "plan_runs", "run_report"]

NOTEBOOK_PATTERN = re.compile(r"^(\d\d)_.+\.ipynb$")


class ReportError(ValueError):
    """The report cannot start: bad notebook folder, selection or parameter file."""


@dataclass
class NotebookRun:
    """One notebook execution: which notebook, under which output name, with which parameters."""

    source: Path
    output_stem: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    """Outcome of one :class:`NotebookRun`."""

    output_stem: str
    source: str
    status: str  # "ok" | "failed"
    seconds: float
    error: str | None
    notebook: str | None  # executed .ipynb (relative to the report folder)
    html: str | None  # HTML export (relative to the report folder)
    parameters: dict[str, Any]


# --------------------------------------------------------------------------- planning
def default_notebook_dir() -> Path:
    """``notebooks/`` at the repository top (or under the working directory outside a checkout)."""
    from adlib import config

    top = config.repo_root()
    return (top if top is not None else Path.cwd()) / "notebooks"


def discover_notebooks(notebook_dir: Path, select: Sequence[str] | None = None) -> list[Path]:
    """The ``NN_*.ipynb`` files of ``notebook_dir`` in order, optionally filtered.

    Args:
        notebook_dir: folder to scan.
        select: NN prefixes or stems to keep (e.g. ``["00", "01"]``); ``None`` keeps all.

    Raises:
        ReportError: no notebooks, or a selection that matches nothing.
    """
    if not notebook_dir.is_dir():
        raise ReportError(f"Notebook folder {notebook_dir} does not exist (use --notebook-dir).")
    found = _in_run_order(p for p in notebook_dir.iterdir() if NOTEBOOK_PATTERN.match(p.name))
    if not found:
        raise ReportError(f"No NN_*.ipynb notebooks in {notebook_dir}.")
    if not select:
        return found
    chosen = []
    for key in select:
        matches = [p for p in found if _matches(p, key)]
        if not matches:
            names = ", ".join(p.stem for p in found)
            raise ReportError(f"--notebooks {key!r} matches no notebook in {notebook_dir}: {names}")
        chosen += [p for p in matches if p not in chosen]
    return _in_run_order(chosen)


def _in_run_order(paths: Iterable[Path]) -> list[Path]:
    """File order, except that the comparison notebook (``NN_comparison``) runs last: it reads the
    results of every other notebook, including those numbered after it (06 feature embeddings)."""
    return sorted(paths, key=lambda p: (p.stem.endswith("_comparison"), p.name))


def _matches(path: Path, key: str) -> bool:
    """``key`` is the notebook's stem, or its NN prefix (``"1"`` and ``"01"`` both match ``01_*``)."""
    key = key.strip().removesuffix(".ipynb")
    if key.isdigit():
        return path.name[:2] == key.zfill(2)
    return path.stem == key


def _safe_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name)).strip("-.")
    if not cleaned:
        raise ReportError(f"Run name {name!r} has no usable characters.")
    return cleaned


def mvtec_categories(data_root: str | Path) -> list[str]:
    """MVTec categories present under ``data_root`` (folders holding ``train/good`` and ``test``)."""
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise ReportError(f"categories: auto needs DATA_ROOT to be an MVTec folder; {root} does not exist.")
    found = [
        p.name
        for p in sorted(root.iterdir())
        if p.is_dir() and (p / "train" / "good").is_dir() and (p / "test").is_dir()
    ]
    if not found:
        raise ReportError(
            f"categories: auto found no MVTec category under {root} "
            "(expected <DATA_ROOT>/<category>/train/good and <category>/test)."
        )
    return found


def load_params(path: Path) -> dict[str, Any]:
    """Read a sweep file (YAML): ``{"parameters": {...}, "runs": [...]}`` or a bare list of runs."""
    import yaml

    if not path.is_file():
        raise ReportError(f"Parameter file {path} does not exist.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ReportError(f"Parameter file {path} is not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if isinstance(data, list):
        data = {"runs": data}
    if not isinstance(data, dict) or not set(data) <= {"parameters", "runs"}:
        raise ReportError(
            f"Parameter file {path}: expected a mapping with 'parameters' and/or 'runs' "
            "(or a list of runs)."
        )
    if not isinstance(data.get("parameters", {}) or {}, dict):
        raise ReportError(f"Parameter file {path}: 'parameters' must be a mapping.")
    runs = data.get("runs", []) or []
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise ReportError(f"Parameter file {path}: 'runs' must be a list of mappings.")
    for run in runs:
        unknown = set(run) - {"notebook", "name", "parameters", "categories"}
        if "notebook" not in run or unknown:
            raise ReportError(
                f"Parameter file {path}: each run needs 'notebook' and may have 'name', "
                f"'parameters', 'categories'; got {sorted(run)}."
            )
    base = path.resolve().parent
    shared = _resolve_paths(dict(data.get("parameters") or {}), base)
    for run in runs:
        run["parameters"] = _resolve_paths(dict(run.get("parameters") or {}), base)
    return {"parameters": shared, "runs": runs}


PATH_PARAMETERS = ("DATA_ROOT",)
"""Parameters holding paths: relative values in a sweep file are read from the file's folder."""


def _resolve_paths(parameters: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make relative path parameters absolute, relative to the sweep file's folder ``base``."""
    for key in PATH_PARAMETERS:
        value = parameters.get(key)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            parameters[key] = str((base / value).resolve())
    return parameters


def plan_runs(notebooks: list[Path], params: dict[str, Any] | None = None) -> list[NotebookRun]:
    """Expand the selected notebooks and a sweep (see the module docstring) into runs, in order."""
    params = params or {"parameters": {}, "runs": []}
    shared = dict(params.get("parameters") or {})
    per_notebook: dict[Path, list[NotebookRun]] = {}
    for spec in params.get("runs") or []:
        key = str(spec["notebook"])
        targets = [p for p in notebooks if _matches(p, key)]
        if not targets:
            raise ReportError(f"Sweep entry names notebook {key!r}, which is not among the selected notebooks.")
        source = targets[0]
        values = {**shared, **(spec.get("parameters") or {})}
        categories = spec.get("categories")
        if categories is not None:
            if categories == "auto":
                if not values.get("DATA_ROOT"):
                    raise ReportError(f"Sweep entry for {key!r}: categories: auto needs DATA_ROOT.")
                categories = mvtec_categories(values["DATA_ROOT"])
            if not isinstance(categories, list):
                raise ReportError(f"Sweep entry for {key!r}: categories must be 'auto' or a list.")
            prefix = f"{_safe_name(spec['name'])}-" if spec.get("name") else ""
            for category in categories:
                stem = f"{source.stem}-{prefix}{_safe_name(category)}"
                per_notebook.setdefault(source, []).append(
                    NotebookRun(source, stem, {**values, "CATEGORY": str(category)})
                )
        else:
            if "name" not in spec:
                raise ReportError(f"Sweep entry for {key!r} needs a 'name' (used in the output file name).")
            per_notebook.setdefault(source, []).append(
                NotebookRun(source, f"{source.stem}-{_safe_name(spec['name'])}", values)
            )
    runs: list[NotebookRun] = []
    for notebook in notebooks:
        runs += per_notebook.get(notebook, [NotebookRun(notebook, notebook.stem, dict(shared))])
    stems = [r.output_stem for r in runs]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise ReportError(f"Two runs would write the same output: {', '.join(duplicates)}; give them distinct names.")
    return runs


# --------------------------------------------------------------------------- execution
def _error_message(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "PapermillExecutionError":
        ename, evalue = getattr(exc, "ename", name), getattr(exc, "evalue", "")
        cell = getattr(exc, "exec_count", None)
        where = f" (cell [{cell}])" if cell is not None else ""
        return f"{ename}: {evalue}{where}"
    text = str(exc).strip().splitlines()
    return f"{name}: {text[0] if text else ''}"[:500]


def _export_html(notebook: Path, target: Path) -> None:
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(notebook, as_version=4))
    target.write_text(body, encoding="utf-8")


def _execute(
    run: NotebookRun,
    out_dir: Path,
    profile: str,
    results_dir: Path,
    timeout: float | None,
    kernel: str,
) -> RunResult:
    import papermill

    parameters = {**run.parameters, "PROFILE": profile, "RESULTS_DIR": str(results_dir)}
    executed = out_dir / f"{run.output_stem}.ipynb"
    html_path = out_dir / f"{run.output_stem}.html"
    for stale in (executed, html_path):
        stale.unlink(missing_ok=True)
    error: str | None = None
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(run.source),
            str(executed),
            parameters=parameters,
            kernel_name=kernel,
            cwd=str(run.source.parent),
            progress_bar=True,
            execution_timeout=timeout,
            report_mode=False,
        )
    except Exception as exc:  # one failing notebook must not stop the others
        error = _error_message(exc)
    seconds = time.perf_counter() - start
    html_rel: str | None = None
    if executed.is_file():
        try:
            _export_html(executed, html_path)
            html_rel = html_path.name
        except Exception as exc:  # the run result stands; report the export problem
            error = (error + "; " if error else "") + f"HTML export failed: {_error_message(exc)}"
    return RunResult(
        output_stem=run.output_stem,
        source=run.source.name,
        status="failed" if error else "ok",
        seconds=seconds,
        error=error,
        notebook=executed.name if executed.is_file() else None,
        html=html_rel,
        parameters=parameters,
    )


# --------------------------------------------------------------------------- entry points
def run_report(
    profile: str | None = None,
    *,
    notebooks: Sequence[str] | None = None,
    params: Path | str | None = None,
    out: Path | str = "reports",
    timeout: float | None = None,
    notebook_dir: Path | str | None = None,
    kernel: str = "python3",
) -> int:
    """Execute the notebooks and write the report; return 0 if all succeeded, else 1.

    Args:
        profile: ``"smoke" | "cpu" | "paper"``; ``None`` reads ``$ADLIB_PROFILE`` (default cpu).
        notebooks: NN prefixes or stems to run (default: all, in order).
        params: YAML sweep file (see the module docstring).
        out: report folder; the report goes to ``<out>/<profile>/``.
        timeout: per-cell execution timeout in seconds (``None``: no limit).
        notebook_dir: folder holding ``NN_*.ipynb`` (default: ``notebooks/`` of the checkout).
        kernel: Jupyter kernel name.

    Raises:
        ReportError: before anything runs, when the selection or the sweep file is invalid.
    """
    from adlib import config

    try:
        profile = config.resolve_profile(profile)
    except ValueError as exc:
        raise ReportError(str(exc)) from None
    folder = Path(notebook_dir).resolve() if notebook_dir else default_notebook_dir()
    selected = discover_notebooks(folder, notebooks)
    plan = plan_runs(selected, load_params(Path(params)) if params else None)
    out_dir = (Path(out) / profile).resolve()
    results_dir = out_dir / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    record_start(results_dir, profile)
    wall_start = time.time()

    results: list[RunResult] = []
    previous = os.environ.get("ADLIB_PROFILE")
    os.environ["ADLIB_PROFILE"] = profile  # inherited by the kernels papermill starts
    started = time.perf_counter()
    try:
        for i, run in enumerate(plan, 1):
            print(f"[{i}/{len(plan)}] start {run.output_stem}  {_short_params(run.parameters)}", flush=True)
            result = _execute(run, out_dir, profile, results_dir, timeout, kernel)
            results.append(result)
            detail = f"  {result.error}" if result.error else ""
            print(f"[{i}/{len(plan)}] {result.status:6s} {run.output_stem} in {_fmt_seconds(result.seconds)}{detail}", flush=True)
            write_index(out_dir, profile, results, results_dir, pending=len(plan) - i, since=wall_start)
    finally:
        if previous is None:
            os.environ.pop("ADLIB_PROFILE", None)
        else:
            os.environ["ADLIB_PROFILE"] = previous
    index = write_index(out_dir, profile, results, results_dir, since=wall_start)
    failed = [r.output_stem for r in results if r.status != "ok"]
    print(
        f"Report: {index}  ({len(results) - len(failed)} ok, {len(failed)} failed, "
        f"{_fmt_seconds(time.perf_counter() - started)})",
        flush=True,
    )
    if failed:
        print("Failed: " + ", ".join(failed), file=sys.stderr, flush=True)
    return 1 if failed else 0


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the report options to ``parser`` (shared by ``python -m adlib.report`` and ``adlib report``)."""
    parser.add_argument("--profile", default=None, help="smoke | cpu | paper (default: $ADLIB_PROFILE or cpu)")
    parser.add_argument("--notebooks", default=None, help="comma-separated NN prefixes or stems, e.g. 00,01")
    parser.add_argument("--params", default=None, help="YAML parameter/sweep file")
    parser.add_argument("--out", default="reports", help="report folder (default: reports)")
    parser.add_argument("--timeout", type=float, default=None, help="per-cell timeout in seconds")
    parser.add_argument("--notebook-dir", default=None, help="folder with NN_*.ipynb (default: notebooks/)")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel (default: python3)")
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run the report for parsed arguments; usage errors print a message and return 2."""
    selection = [s for s in args.notebooks.split(",") if s.strip()] if args.notebooks else None
    try:
        return run_report(
            args.profile,
            notebooks=selection,
            params=args.params,
            out=args.out,
            timeout=args.timeout,
            notebook_dir=args.notebook_dir,
            kernel=args.kernel,
        )
    except ReportError as exc:
        print(f"adlib report: {exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m adlib.report [options]``."""
    parser = add_arguments(argparse.ArgumentParser(prog="python -m adlib.report", description=__doc__.splitlines()[0]))
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
