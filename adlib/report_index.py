"""The report's index page: run status, this run's results (mean ± sd over seeds, 95 % bootstrap
intervals over test images), a link to the paired "A beats B" table, older results flagged with
their date, and the comparison notebook's HTML fragments (:mod:`adlib.report`)."""

from __future__ import annotations

import html
import json
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adlib.report import RunResult


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: .35rem .6rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.ok { color: #17663a; font-weight: 600; } .failed { color: #b00020; font-weight: 600; }
code, .error { font-family: ui-monospace, monospace; font-size: .85em; }
.comparison { margin: 1.5rem 0; }
"""


def _fmt_seconds(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _short_params(parameters: dict[str, Any]) -> str:
    shown = {k: v for k, v in parameters.items() if k not in ("PROFILE", "RESULTS_DIR")}
    return ", ".join(f"{k}={v!r}" for k, v in shown.items())


def comparison_fragments(results_dir: Path, since: float | None = None) -> list[Path]:
    """HTML fragments written by the comparison notebook (``RESULTS_DIR/comparison/*.html``),
    only those written at or after ``since`` (a ``time.time()``; None: all)."""
    folder = results_dir / "comparison"
    found = sorted(folder.glob("*.html")) if folder.is_dir() else []
    return [f for f in found if since is None or f.stat().st_mtime >= since]


def record_start(results_dir: Path, profile: str) -> str:
    """Write ``RESULTS_DIR/.report-run.json`` (when this report run started); return the time."""
    from adlib.pipelines.comparison import REPORT_RUN_FILE

    started = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    marker = results_dir / REPORT_RUN_FILE
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(json.dumps({"started": started, "profile": profile}) + "\n", encoding="utf-8")
    tmp.replace(marker)
    return started


def results_overview(results_dir: Path, fragments: list[Path] | None = None) -> str:
    """HTML: this run's results (mean ± sd over seeds [95 % interval], n), a link to the paired
    "A beats B" fragment when ``fragments`` (this run's) hold one, and the older files left out."""
    from adlib.pipelines import comparison
    from adlib.pipelines.comparison_stats import INTERVAL_NOTE
    from adlib.pipelines.comparison_views import PAIRED_FRAGMENT

    collected = comparison.load_comparison(results_dir)
    parts = []
    if collected.frame.empty:
        parts.append("<p>No results files were written by this report run.</p>")
    else:
        table = comparison.overview_table(collected.frame)
        parts.append('<p class="caption">One row per experiment of this run; runs that differ only in '
                     "SEED are averaged (mean ± sd, n runs; seeds listed). Pixel F1 at the honest "
                     "threshold named in threshold_source. " + html.escape(INTERVAL_NOTE) + "</p>")
        parts.append(table.to_html(index=False, na_rep="n/a", border=0, float_format=lambda v: f"{v:.3f}"))
        paired = [f for f in fragments or [] if f.stem == PAIRED_FRAGMENT]
        if paired:
            parts.append(f'<p>Is one method really better than another on the same test images? See the '
                         f'paired bootstrap: <a href="#{html.escape(PAIRED_FRAGMENT)}">"A beats B"</a>.</p>')
    older = comparison.older_table(collected)
    if not older.empty:
        parts.append(f'<p class="caption"><b>Older results</b> in this folder, from before this run '
                     f"(started {html.escape(str(collected.since))}): not part of this report's tables.</p>")
        parts.append(older.to_html(index=False, na_rep="n/a", border=0))
    return "\n".join(parts)


def write_index(out_dir: Path, profile: str, results: list[RunResult], results_dir: Path, pending: int = 0,
                since: float | None = None) -> Path:
    """Write ``index.html`` and ``summary.json`` for the runs so far; return the index path.

    ``since``: the report's start (``time.time()``): comparison fragments older than that belong
    to an earlier run and are not embedded.
    """
    from adlib import __version__

    failed = sum(r.status != "ok" for r in results)
    rows = []
    for i, r in enumerate(results, 1):
        name = html.escape(r.output_stem)
        link = f'<a href="{html.escape(r.html)}">{name}</a>' if r.html else name
        extra = f' (<a href="{html.escape(r.notebook)}">ipynb</a>)' if r.notebook else ""
        error = f'<span class="error">{html.escape(r.error)}</span>' if r.error else ""
        rows.append(
            f"<tr><td>{i}</td><td>{link}{extra}</td><td><code>{html.escape(_short_params(r.parameters))}</code></td>"
            f'<td class="{r.status}">{r.status}</td><td>{_fmt_seconds(r.seconds)}</td><td>{error}</td></tr>'
        )
    fragments = comparison_fragments(results_dir, since)
    stale = len(comparison_fragments(results_dir)) - len(fragments)
    if fragments:
        tables = "\n".join(
            f'<div class="comparison" id="{html.escape(f.stem)}"><h3>{html.escape(f.stem)}</h3>\n{f.read_text(encoding="utf-8")}\n</div>'
            for f in fragments
        )
    else:
        tables = (
            "<p>No comparison tables were produced by this run (the comparison notebook writes them to "
            f"<code>{html.escape(str(results_dir / 'comparison'))}/*.html</code>)"
            + (f"; {stale} table(s) there are from an earlier run and are not shown" if stale else "")
            + ".</p>"
        )
    total = sum(r.seconds for r in results)
    status_line = (
        f"{len(results)} run(s): {len(results) - failed} ok, {failed} failed"
        + (f", {pending} still to run" if pending else "")
        + f"; total {_fmt_seconds(total)}."
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>adlib report ({html.escape(profile)})</title><style>{_STYLE}</style></head>
<body>
<h1>adlib report: profile <code>{html.escape(profile)}</code></h1>
<p>Generated {datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")} by adlib {html.escape(__version__)}.
{html.escape(status_line)} Results folder: <code>{html.escape(str(results_dir))}</code>.</p>
<h2>Notebooks</h2>
<table><thead><tr><th>#</th><th>Notebook</th><th>Parameters</th><th>Status</th><th>Duration</th><th>Error</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
<h2>Results of this run</h2>
{results_overview(results_dir, fragments)}
<h2>Comparison tables</h2>
{tables}
</body></html>
"""
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    summary = {"profile": profile, "results_dir": str(results_dir), "runs": [asdict(r) for r in results]}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    return index
