"""The report runner: every notebook runs, failures are reported, sweeps make one copy per run.

Uses throwaway notebooks built in ``tmp_path`` (each run starts a kernel: a few seconds each).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from adlib import report
from adlib.report import ReportError, discover_notebooks, plan_runs

PARAMETERS = 'import os\nPROFILE = os.environ.get("ADLIB_PROFILE", "cpu")\nRESULTS_DIR = "results"\nCATEGORY = "bottle"\nTAG = "default"\n'

OK_BODY = """
import pathlib
assert os.path.isabs(RESULTS_DIR), RESULTS_DIR
assert os.environ["ADLIB_PROFILE"] == PROFILE == "smoke"
assert pathlib.Path.cwd().name == "nbs", pathlib.Path.cwd()
out = pathlib.Path(RESULTS_DIR) / "ok"
out.mkdir(parents=True, exist_ok=True)
(out / f"{TAG}-{CATEGORY}.json").write_text('{"tag": "%s"}' % TAG)
print("wrote", TAG, CATEGORY)
"""

FAIL_BODY = 'raise ValueError("deliberate failure 4242")\n'

COMPARE_BODY = """
import pathlib
names = sorted(p.name for p in pathlib.Path(RESULTS_DIR, "ok").glob("*.json"))
cmp = pathlib.Path(RESULTS_DIR) / "comparison"
cmp.mkdir(exist_ok=True)
(cmp / "image_auroc.html").write_text('<table id="cmp-table"><tr><td>' + " ".join(names) + "</td></tr></table>")
"""


def _notebook(path: Path, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(PARAMETERS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# test"), params, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)


@pytest.fixture()
def nb_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "nbs"
    folder.mkdir()
    _notebook(folder / "00_ok.ipynb", OK_BODY)
    _notebook(folder / "01_broken.ipynb", FAIL_BODY)
    _notebook(folder / "02_compare.ipynb", COMPARE_BODY)
    (folder / "notes.ipynb").write_text("not a course notebook: ignored")
    return folder


@pytest.mark.slow
def test_report_runs_all_reports_failure_and_embeds_tables(nb_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "reports"
    code = report.main(["--profile", "smoke", "--notebook-dir", str(nb_dir), "--out", str(out), "--timeout", "120"])

    assert code == 1  # one notebook failed
    folder = out / "smoke"
    for stem in ("00_ok", "01_broken", "02_compare"):
        assert (folder / f"{stem}.ipynb").is_file(), stem
        assert (folder / f"{stem}.html").stat().st_size > 1000, stem
    assert (folder / "results" / "ok" / "default-bottle.json").is_file()

    index = (folder / "index.html").read_text()
    for stem, status in (("00_ok", "ok"), ("01_broken", "failed"), ("02_compare", "ok")):
        row = next(r for r in index.split("<tr>") if f'href="{stem}.html"' in r)
        assert f'class="{status}">{status}<' in row, row
        assert re.search(r"<td>\d+\.\d s</td>", row), row
    assert "ValueError: deliberate failure 4242" in index
    # the comparison notebook ran after the failure and its fragment is embedded
    assert "Comparison tables" in index and 'id="cmp-table"' in index and "default-bottle.json" in index

    summary = json.loads((folder / "summary.json").read_text())
    assert [r["status"] for r in summary["runs"]] == ["ok", "failed", "ok"]
    printed = capsys.readouterr().out
    assert "[2/3] start 01_broken" in printed and "[2/3] failed" in printed


@pytest.mark.slow
def test_yaml_sweep_makes_one_copy_per_entry(nb_dir: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "parameters:\n  TAG: swept\n"
        "runs:\n"
        "  - {notebook: '00', name: a, parameters: {CATEGORY: screw}}\n"
        "  - {notebook: 00_ok, name: b, parameters: {CATEGORY: wood}}\n"
    )
    out = tmp_path / "reports"
    code = report.main(
        ["--profile", "smoke", "--notebook-dir", str(nb_dir), "--out", str(out), "--params", str(sweep), "--notebooks", "0"]
    )

    assert code == 0
    folder = out / "smoke"
    assert sorted(p.name for p in folder.glob("*.ipynb")) == ["00_ok-a.ipynb", "00_ok-b.ipynb"]
    assert sorted(p.name for p in (folder / "results" / "ok").iterdir()) == ["swept-screw.json", "swept-wood.json"]
    index = (folder / "index.html").read_text()
    assert "No comparison tables were produced" in index
    assert index.count('class="ok">ok<') == 2


def test_plan_expands_auto_categories_and_keeps_order(nb_dir: Path, tmp_path: Path) -> None:
    mvtec = tmp_path / "mvtec"
    for category in ("screw", "bottle"):
        (mvtec / category / "train" / "good").mkdir(parents=True)
        (mvtec / category / "test").mkdir(parents=True)
    (mvtec / "license.txt").write_text("x")
    (mvtec / "not_a_category").mkdir()
    notebooks = discover_notebooks(nb_dir)
    assert [p.name for p in notebooks] == ["00_ok.ipynb", "01_broken.ipynb", "02_compare.ipynb"]

    runs = plan_runs(notebooks, {"parameters": {"DATA_ROOT": str(mvtec)}, "runs": [{"notebook": "01", "categories": "auto"}]})

    assert [r.output_stem for r in runs] == ["00_ok", "01_broken-bottle", "01_broken-screw", "02_compare"]
    assert runs[1].parameters == {"DATA_ROOT": str(mvtec), "CATEGORY": "bottle"}


def test_plan_and_selection_errors_are_raised_before_running(nb_dir: Path, tmp_path: Path) -> None:
    notebooks = discover_notebooks(nb_dir)
    with pytest.raises(ReportError, match="DATA_ROOT"):
        plan_runs(notebooks, {"parameters": {}, "runs": [{"notebook": "01", "categories": "auto"}]})
    with pytest.raises(ReportError, match="same output"):
        plan_runs(notebooks, {"runs": [{"notebook": "01", "name": "x"}, {"notebook": "01", "name": "x"}]})
    with pytest.raises(ReportError, match="matches no notebook"):
        discover_notebooks(nb_dir, ["07"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("runs:\n  - {name: nobook}\n")
    assert report.main(["--notebook-dir", str(nb_dir), "--params", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert not (tmp_path / "r").exists()


def test_cli_import_is_light_and_report_is_wired() -> None:
    import subprocess
    import sys

    code = (
        "import sys, adlib.cli as c; p = c.build_parser(); "
        "a = p.parse_args(['report', '--profile', 'smoke', '--notebooks', '00,01', '--timeout', '5']); "
        "assert a.func.__name__ == '_cmd_report' and a.notebooks == '00,01' and a.timeout == 5.0; "
        "heavy = [m for m in ('papermill', 'nbconvert', 'pooch', 'torch') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_relative_data_root_in_sweep_is_read_from_the_sweep_folder(tmp_path: Path) -> None:
    from adlib.report import load_params

    (tmp_path / "sweeps").mkdir()
    sweep = tmp_path / "sweeps" / "s.yaml"
    sweep.write_text(
        "parameters: {DATA_ROOT: ../data}\n"
        "runs:\n  - {notebook: '01', parameters: {DATA_ROOT: /abs/mvtec, CATEGORY: x}}\n"
        "  - {notebook: '02', parameters: {DATA_ROOT: dagm}}\n",
        encoding="utf-8",
    )
    params = load_params(sweep)
    assert params["parameters"]["DATA_ROOT"] == str((tmp_path / "data").resolve())
    assert params["runs"][0]["parameters"]["DATA_ROOT"] == "/abs/mvtec"
    assert params["runs"][1]["parameters"]["DATA_ROOT"] == str((tmp_path / "sweeps" / "dagm").resolve())


RESULTS_BODY = """
import numpy as np, pandas as pd
from adlib import experiment, results
if FAIL:
    raise RuntimeError("this run fails before writing")
labels = np.array([0, 0, 0, 1, 1, 1])
scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9]) + 0.05 * SEED * np.array([0, 0, 1, 0, -1, 0])
frame = pd.DataFrame({"path": [f"{i}.png" for i in range(6)], "label": labels,
                      "defect": np.where(labels == 1, "crack", "good"), "score": scores})
m = dict.fromkeys(results.METRIC_KEYS)
m.update(results.image_metrics_from_scores(frame))
results.save_results(RESULTS_DIR, notebook="01_fake", method="fake-ae", dataset="mvtec", category="bottle",
                     synthetic=True, profile=PROFILE, seed=SEED, metrics=m, scores=frame,
                     run_id=experiment.run_id(SEED, {"epochs": 1}))
"""


@pytest.mark.slow
def test_seed_sweep_keeps_both_runs_and_a_failed_rerun_shows_no_stale_rows(tmp_path: Path) -> None:
    folder = tmp_path / "nbs"
    folder.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(
        'import os\nPROFILE = os.environ.get("ADLIB_PROFILE", "cpu")\nRESULTS_DIR = "results"\nSEED = 0\nFAIL = False\n')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# test"), params, nbformat.v4.new_code_cell(RESULTS_BODY)]
    nbformat.write(nb, folder / "01_fake.ipynb")
    sweep = tmp_path / "seeds.yaml"
    sweep.write_text('runs:\n  - {notebook: "01", name: seed0, parameters: {SEED: 0}}\n'
                     '  - {notebook: "01", name: seed1, parameters: {SEED: 1}}\n')
    out = tmp_path / "reports"
    args = ["--profile", "smoke", "--notebook-dir", str(folder), "--out", str(out), "--timeout", "120"]
    assert report.main([*args, "--params", str(sweep)]) == 0
    res = out / "smoke" / "results" / "01_fake"
    assert sorted(p.name for p in res.glob("*.json")) == [
        f"fake-ae-mvtec-bottle-s{s}-{report_hash}.json" for s, report_hash in
        ((0, _hash()), (1, _hash()))]
    index = (out / "smoke" / "index.html").read_text()
    section = index.split("<h2>Results of this run</h2>")[1].split("<h2>")[0]
    row = next(r for r in section.split("<tr>") if "fake-ae" in r)
    assert "<td>2</td>" in row and "<td>0, 1</td>" in row and " ± " in row  # n = 2, mean ± sd

    failing = tmp_path / "fail.yaml"
    failing.write_text('runs:\n  - {notebook: "01", name: again, parameters: {FAIL: true}}\n')
    assert report.main([*args, "--params", str(failing)]) == 1
    index = (out / "smoke" / "index.html").read_text()
    section = index.split("<h2>Results of this run</h2>")[1].split("<h2>")[0]
    assert "No results files were written by this report run" in section
    assert "Older results" in section and section.count("fake-ae") == 2  # listed with dates, not as results


def _hash() -> str:
    from adlib.experiment import run_id

    return run_id(0, {"epochs": 1}).split("-")[1]


def test_index_shows_intervals_and_links_the_paired_table(tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd

    from adlib import bootstrap, results
    from adlib.pipelines.comparison_views import PAIRED_FRAGMENT
    from adlib.report_index import write_index

    res = tmp_path / "results"
    labels = (np.arange(30) % 3 == 0).astype(int)
    scores = np.random.default_rng(0).normal(size=30) + labels
    frame = pd.DataFrame({"path": [f"t{i}.png" for i in range(30)], "label": labels,
                          "defect": np.where(labels == 1, "cut", "good"), "score": scores})
    m = dict.fromkeys(results.METRIC_KEYS)
    m.update(results.image_metrics_from_scores(frame))
    ci, meta = bootstrap.evaluation_intervals(scores=scores, labels=labels, n_boot=200)
    results.save_results(res, notebook="01_fake", method="fake-ae", dataset="mvtec", category="bottle",
                         synthetic=True, profile="smoke", seed=0, metrics=m, scores=frame, run_id="s0-abc123",
                         ci95=ci, bootstrap=meta)
    (res / "comparison").mkdir()
    (res / "comparison" / f"{PAIRED_FRAGMENT}.html").write_text("<table><tr><td>pairs</td></tr></table>")
    index = write_index(tmp_path, "smoke", [], res).read_text()
    section = index.split("<h2>Results of this run</h2>")[1].split("<h2>")[0]
    lo, hi = ci["image_auroc"]
    assert f"{m['image_auroc']:.3f} [{lo:.3f}, {hi:.3f}]" in section and "95 % bootstrap interval" in section
    assert f'href="#{PAIRED_FRAGMENT}"' in section and f'id="{PAIRED_FRAGMENT}"' in index


def test_the_comparison_notebook_runs_after_every_numbered_notebook(tmp_path: Path) -> None:
    for name in ("00_data.ipynb", "05_comparison.ipynb", "06_feature_embeddings.ipynb", "notes.ipynb"):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in discover_notebooks(tmp_path)] == [
        "00_data.ipynb", "06_feature_embeddings.ipynb", "05_comparison.ipynb"]
    assert [p.name for p in discover_notebooks(tmp_path, ["05", "06"])] == [
        "06_feature_embeddings.ipynb", "05_comparison.ipynb"]
