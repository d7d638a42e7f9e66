"""The PatchCore memory-bank benchmark in --quick mode: one row per ratio, a report between markers."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from adlib import bench
from adlib import bench_patchcore as bpc


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One quick run (tiny bottle stand-in generated in a temporary data root, 64 px, 1 thread)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ADLIB_DATA", str(tmp_path_factory.mktemp("data")))
        yield bpc.run_patchcore_bench(quick=True, device="cpu", threads=1, progress=False)


def test_quick_run_has_one_row_per_ratio_and_the_bank_grows(record: dict) -> None:
    rows, s = record["results"], record["settings"]
    assert [r["coreset_ratio"] for r in rows] == list(bpc.RATIOS)
    assert record["quick"] and record["machine"]["torch_threads"] == 1 and s["image_size"] == 64
    patches = record["feature_extraction"]["train_patches"]
    assert patches == s["train_images"] * s["grid"][0] * s["grid"][1] > 0
    banks = [r["bank_patches"] for r in rows]
    assert banks == sorted(set(banks)), banks  # strictly growing with the ratio
    for r in rows:
        assert r["bank_patches"] == max(1, round(r["coreset_ratio"] * patches))
        assert r["bank_mb"] == pytest.approx(r["bank_patches"] * s["embedding_dim"] * 4 / 2**20)
        for key in ("fit_seconds", "nn_ms_per_image", "score_ms_per_image", "peak_rss_fit_mb",
                    "peak_rss_score_mb"):
            assert r[key] > 0, key
        assert r["peak_rss_fit_mb"] >= r["rss_before_fit_mb"] > 0
        assert 0.0 <= r["image_auroc"] <= 1.0
        assert r["max_score_difference"] < 1e-4  # end to end scores the same images the same way
    fx = record["feature_extraction"]
    assert fx["train_seconds"] > 0 and fx["test_ms_per_image"] > 0
    assert s["test_defective"] and s["test_defective"] < s["test_images"]


def test_markers_are_rewritten_and_the_prose_kept(record: dict, tmp_path: Path) -> None:
    md = tmp_path / "benchmarks.md"
    bench_block = f"{bench.BEGIN}\nmodel throughput\n{bench.END}"
    md.write_text(f"# Title\n\nIntro.\n\n{bench_block}\n\n{bpc.BEGIN}\nold\n{bpc.END}\n\n## Notes\n")
    md_path, js_path = bpc.write_results(record, md)
    text = md_path.read_text()
    assert text.startswith("# Title\n\nIntro.") and text.rstrip().endswith("## Notes")
    assert bench_block in text and "\nold\n" not in text
    assert len(re.findall(re.escape(bpc.BEGIN), text)) == 1 == len(re.findall(re.escape(bpc.END), text))
    block = text.split(bpc.BEGIN, 1)[1].split(bpc.END, 1)[0]
    table = [[c.strip() for c in line.strip("|").split("|")] for line in block.splitlines()
             if line.startswith("|")]
    assert table[0] == list(bpc.COLUMNS) and len(table) == 2 + len(bpc.RATIOS)
    for row, r in zip(table[2:], record["results"], strict=True):
        assert float(row[0]) == r["coreset_ratio"] and int(row[1]) == r["bank_patches"]
        assert float(row[3]) == pytest.approx(r["fit_seconds"], abs=0.005)
    assert js_path == tmp_path / "benchmarks_patchcore.json"
    assert json.loads(js_path.read_text())["results"][0]["bank_patches"] == record["results"][0]["bank_patches"]


def test_a_file_without_markers_gets_the_block_appended(record: dict, tmp_path: Path) -> None:
    md = tmp_path / "benchmarks.md"
    md.write_text("# Benchmarks\n\nProse only.\n")
    bpc.write_results(record, md)
    text = md.read_text()
    assert text.startswith("# Benchmarks\n\nProse only.\n\n" + bpc.BEGIN)
    assert text.endswith(bpc.END + "\n")
    bpc.write_results(record, md)  # a second write replaces the block, it does not add one
    assert md.read_text() == text


@pytest.mark.parametrize("ratios", [(), (0.0,), (0.1, 1.5)])
def test_bad_ratios_fail_before_loading(ratios: tuple) -> None:
    with pytest.raises(bench.BenchError, match="ratio"):
        bpc.run_patchcore_bench(ratios)


def test_bench_main_delegates_with_its_arguments(record: dict, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    def fake(ratios: list, **kw: object) -> dict:
        seen.update(kw, ratios=ratios)
        return record

    monkeypatch.setattr(bpc, "run_patchcore_bench", fake)
    out = tmp_path / "b.md"
    assert bench.main(["--patchcore", "--quick", "--ratios", "0.01", "0.1", "--out", str(out)]) == 0
    assert seen["ratios"] == [0.01, 0.1] and seen["quick"] is True and seen["device"] == "cpu"
    assert bpc.BEGIN in out.read_text() and (tmp_path / "b_patchcore.json").is_file()
    assert "Command: `python -m adlib.bench_patchcore --quick --ratios 0.01 0.1" in out.read_text()
