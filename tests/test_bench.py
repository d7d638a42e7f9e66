"""The benchmark runs in --quick mode and writes a complete report (nothing here is timed).

Cached and uncached pipelines giving identical batches for a seed is pinned by
tests/test_torchdata.py::test_cached_and_uncached_give_identical_batches (not repeated here).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from adlib import bench


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One quick run of every model on tiny synthetic data generated in a temporary root."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ADLIB_DATA", str(tmp_path_factory.mktemp("data")))
        yield bench.run_benchmark(quick=True, device="cpu", warmup=0, reps=1, min_steps=1,
                                  threads=1, progress=False)


def _table(md: str, model: str) -> tuple[list[str], list[str]]:
    """Header cells and the first data row of the table under ``### <model>``."""
    section = md.split(f"### {model} ", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    return cells[0], cells[2]


def test_quick_run_covers_every_model(record: dict) -> None:
    assert list(record["results"]) == list(bench.MODELS)
    assert record["quick"] and record["machine"]["torch_threads"] == 1
    for name, r in record["results"].items():
        for key in ("train_ips_end_to_end", "train_ips_compute_only", "infer_ips", "peak_rss_mb"):
            assert r[key] > 0, (name, key)
        assert r["overhead_ratio"] == pytest.approx(
            r["train_ips_compute_only"] / r["train_ips_end_to_end"])
        assert r["meets_target"] == (r["overhead_ratio"] <= bench.TARGET_OVERHEAD)
        assert r["steps_per_epoch"] >= 1 and len(r["reps"]["end_to_end"]) == 1
        assert r["settings"] and r["source"]


def test_sizes_come_from_the_pipeline_profiles(record: dict) -> None:
    from adlib.pipelines import fanogan_vs_ae, hazelnut_ae, unet_dagm_rsdd

    res = record["results"]
    assert res["conv_ae"]["settings"]["image_size"] == hazelnut_ae.PROFILES["smoke"]["image_size"]
    assert res["unet_ae"]["settings"]["base_channels"] == \
        unet_dagm_rsdd.PROFILES["smoke"]["base_channels"]
    assert res["fanogan"]["settings"]["gan_width"] == fanogan_vs_ae.PROFILES["smoke"]["gan_width"]
    assert "PROFILES['smoke']" in res["ae256"]["source"]


def test_report_has_a_full_table_per_model(record: dict, tmp_path: Path) -> None:
    md_path, js_path = bench.write_results(record, tmp_path / "docs" / "benchmarks.md")
    md = md_path.read_text()
    assert "Command: `python -m adlib.bench --quick`" in md and "Load average" in md
    for name, r in record["results"].items():
        header, row = _table(md, name)
        assert header == list(bench.COLUMNS)
        assert len(row) == len(header) and all(cell and cell != "n/a" for cell in row)
        e2e, cmp_, ratio = float(row[1]), float(row[2]), float(row[3])
        assert ratio == pytest.approx(r["overhead_ratio"], abs=5e-4)
        assert e2e == pytest.approx(r["train_ips_end_to_end"], abs=0.05)
        assert cmp_ == pytest.approx(r["train_ips_compute_only"], abs=0.05)
    saved = json.loads(js_path.read_text())
    assert js_path == md_path.with_suffix(".json")
    assert set(saved["results"]) == set(bench.MODELS)


def test_rewrite_keeps_the_prose_around_the_markers(record: dict, tmp_path: Path) -> None:
    md = tmp_path / "benchmarks.md"
    md.write_text(f"# Title\n\nIntro prose.\n\n{bench.BEGIN}\nold numbers\n{bench.END}\n\n## Findings\n")
    bench.write_results(record, md)
    text = md.read_text()
    assert text.startswith("# Title\n\nIntro prose.") and text.rstrip().endswith("## Findings")
    assert "old numbers" not in text and len(re.findall(re.escape(bench.BEGIN), text)) == 1


def test_missed_target_is_flagged() -> None:
    r = {"notebook": "01", "description": "d", "settings": {"a": 1}, "source": "s",
         "setup_seconds": 0.1, "steps_per_epoch": 2, "epochs_per_rep": 1,
         "reps": {"end_to_end": [10.0], "compute_only": [20.0], "infer": [5.0]},
         "train_ips_end_to_end": 10.0, "train_ips_compute_only": 20.0, "overhead_ratio": 2.0,
         "infer_ips": 5.0, "peak_rss_mb": 100.0, "meets_target": False, "amp": False}
    rec = {"command": "c", "device": "cpu", "warmup": 1, "reps": 1, "min_steps": 1,
           "target_overhead": 1.1, "results": {"conv_ae": r},
           "machine": {"date": "d", "cpu": "x", "cores": 2, "torch": "t", "torch_threads": 2,
                       "python": "3", "gpu": None}}
    md = bench.render_markdown(rec)
    assert "**misses**" in md and "| cpu | 10.0 | 20.0 | 2.000 | 5.0 | 100 |" in md


def test_workloads_are_the_pipelines_training_specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No patching: the benchmarked model, loader and step are those of the pipeline's spec()."""
    from adlib.models.conv_ae import ConvAutoencoder
    from adlib.pipelines import hazelnut_ae

    monkeypatch.setenv("ADLIB_DATA", str(tmp_path / "data"))
    w = bench.BUILDERS["conv_ae"](True, torch.device("cpu"), tmp_path)
    cfg = hazelnut_ae.settings("smoke")
    assert isinstance(w.model, ConvAutoencoder) and w.model.latent_dim == cfg["latent_dim"]
    batch = next(iter(w.loader))
    assert batch["image"].shape[0] == cfg["batch_size"]
    data = hazelnut_ae.load(cfg, progress=False)
    spec = hazelnut_ae.spec(data, {**cfg, "monitor_every": 0}, "l2")
    assert [p.shape for p in w.model.parameters()] == [p.shape for p in spec.model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(w.model.state_dict().values(),
                                                 spec.model.state_dict().values(), strict=True))


def test_bad_arguments_fail_before_loading() -> None:
    with pytest.raises(bench.BenchError, match="Unknown model"):
        bench.resolve_models(["conv_ae", "resnet"])
    with pytest.raises(bench.BenchError, match="reps"):
        bench.run_benchmark(["conv_ae"], quick=True, reps=0)


def test_min_seconds_lengthens_short_repetitions() -> None:
    """Repetitions of a fast step are stretched to about ``min_seconds`` (whole epochs)."""
    import time as _time

    model = torch.nn.Linear(4, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = [{"image": torch.rand(2, 4)} for _ in range(3)]

    def step(m: torch.nn.Module, b: dict, ctx: object) -> torch.Tensor:
        _time.sleep(0.01)  # 3 steps = about 30 ms per epoch
        return m(b["image"]).pow(2).mean()

    w = bench.Workload(name="t", description="", settings={}, source="", model=model, optimizer=opt,
                       loader=loader, step=step, infer=lambda dev: 1)
    short = bench.measure(w, torch.device("cpu"), warmup=1, reps=1, min_steps=1, amp=False)
    longer = bench.measure(w, torch.device("cpu"), warmup=1, reps=1, min_steps=1, amp=False,
                           min_seconds=0.3)
    assert short["epochs_per_rep"] == 1
    assert 5 <= longer["epochs_per_rep"] <= 12  # 0.3 s / ~0.03 s per epoch, allowing slow sleeps
