"""Strict settings: bad parameters fail in a notebook's setup cell, before data or results.

The unit tests cover :func:`adlib.config.settings` and :func:`adlib.notebook.unknown_parameters`;
the papermill tests run every model notebook with a refused setting (a kernel start each, a few
seconds) and check that the setup cell failed with a message naming the parameter, and that no
results file was written.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from adlib import config, notebook
from adlib.config import SettingsError

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
TABLE = {"smoke": {"epochs": 1, "latent_sizes": [50, 500], "lr": 1e-3, "image_size": 64,
                   "val_fraction": 0.2, "loss": "l2", "datasets": ["dagm", "rsdd"]},
         "cpu": {}, "paper": {}}


def test_text_given_with_papermill_is_parsed_to_the_profile_type() -> None:
    cfg = config.settings("smoke", TABLE, {"latent_sizes": "[50]", "epochs": "3", "lr": 1, "datasets": '["dagm"]'})
    assert cfg["latent_sizes"] == [50] and cfg["epochs"] == 3 and cfg["lr"] == 1.0
    assert cfg["datasets"] == ["dagm"] and isinstance(cfg["lr"], float)
    assert config.settings("smoke", TABLE, {"epochs": None}) == TABLE["smoke"]  # None keeps the profile


@pytest.mark.parametrize(("override", "message"), [
    ({"epochs": 0}, r"EPOCHS=0: must be at least 1"),
    ({"latent_sizes": "[0, 50]"}, r"LATENT_SIZES=\[0, 50\]: must be at least 1"),
    ({"latent_sizes": "fifty"}, r"LATENT_SIZES='fifty' must be a list"),
    ({"latent_sizes": "[]"}, r"LATENT_SIZES=\[\] is empty"),
    ({"image_size": 2.5}, r"IMAGE_SIZE=2.5 must be an integer"),
    ({"lr": "fast"}, r"LR='fast' must be a number"),
    ({"val_fraction": 1.0}, r"VAL_FRACTION=1.0: a fraction strictly between 0 and 1"),
    ({"loss": 2}, r"LOSS=2 must be text"),
    ({"epoch": 3}, r"Unknown setting EPOCH"),
])
def test_refused_settings_name_the_parameter(override: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        config.settings("smoke", TABLE, override)


def test_pipeline_check_runs_after_the_generic_ones() -> None:
    def check(cfg: dict) -> None:
        if cfg["image_size"] % 32:
            raise SettingsError(f"IMAGE_SIZE={cfg['image_size']}: a multiple of 32 is needed.")

    with pytest.raises(SettingsError, match="multiple of 32"):
        config.settings("smoke", TABLE, {"image_size": 48}, check=check)
    with pytest.raises(SettingsError, match="Unknown profile"):
        config.settings("fast", TABLE)


def test_unknown_papermill_parameters_are_found_in_the_kernel_history() -> None:
    params = 'import os\nPROFILE = "cpu"\nEPOCHS = None\nSEED = 0\n'
    injected = "# Parameters\nEPOCHS = 2\nEPOCH = 3\nSEEDS = [1]\n"
    assert notebook.unknown_parameters(["", params, injected, "x = 1"]) == ["EPOCH", "SEEDS"]
    assert notebook.unknown_parameters(["", params, "# Parameters\nEPOCHS = 2\n"]) == []
    assert notebook.unknown_parameters(["", params]) == []  # nbmake: no injected cell
    assert notebook.unknown_parameters(["x = 1"]) == []  # not a course notebook


def test_results_dir_that_cannot_be_written_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(SettingsError, match="RESULTS_DIR=.*cannot be written"):
        config.check_results_dir(blocker / "results")
    assert config.check_results_dir(tmp_path / "new" / "results").is_dir()
    with pytest.raises(SettingsError, match="SEED='1' must be an integer"):
        notebook.check_parameters(seed="1")


REFUSALS = [
    ("01_hazelnut_autoencoder", {"EPOCHS": 0}, "EPOCHS"),
    ("01_hazelnut_autoencoder", {"LATENT_SIZES": "[0]"}, "LATENT_SIZES"),
    ("01_hazelnut_autoencoder", {"EPOCH": 3}, "Unknown parameter(s) EPOCH"),
    ("02_unet_autoencoder_dagm_rsdd", {"EPOCHS": 0}, "EPOCHS"),
    ("02_unet_autoencoder_dagm_rsdd", {"DATASETS": '["dagm", "rssd"]'}, "rssd"),
    ("03_sem_patch_autoencoder_denoiser", {"EPOCHS": 0}, "EPOCHS"),
    ("04_fanogan_vs_autoencoder", {"EPOCHS": 0}, "EPOCHS"),
    ("04_fanogan_vs_autoencoder", {"IMAGE_SIZE": "big"}, "IMAGE_SIZE"),
    ("05_comparison", {"BASELINE_DATASETS": "mvtec"}, "BASELINE_DATASETS"),
    ("06_feature_embeddings", {"CORESET_RATIO": 0}, "CORESET_RATIO"),
    ("06_feature_embeddings", {"EPOCHS": 0}, "EPOCHS"),
]


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.parametrize(("stem", "parameters", "message"), REFUSALS, ids=[f"{s[:2]}-{next(iter(p))}" for s, p, _ in REFUSALS])
def test_notebook_refuses_in_its_setup_cell_and_writes_nothing(
    stem: str, parameters: dict, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    papermill = pytest.importorskip("papermill")
    monkeypatch.setenv("ADLIB_DATA", str(tmp_path / "data"))
    results_dir = tmp_path / "results"
    out = tmp_path / "out.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as info:
        papermill.execute_notebook(str(NOTEBOOKS / f"{stem}.ipynb"), str(out), kernel_name="python3",
                                   parameters={"PROFILE": "smoke", "RESULTS_DIR": str(results_dir), **parameters},
                                   cwd=str(NOTEBOOKS), progress_bar=False)
    assert message in str(info.value.evalue), info.value.evalue
    executed = nbformat.read(out, as_version=4)
    failed = [c for c in executed.cells if c.cell_type == "code"
              and any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert len(failed) == 1 and "notebook.setup(" in failed[0].source, "must fail in the setup cell"
    assert not list(results_dir.rglob("*.json")) and not list(results_dir.rglob("*.pt"))
    assert not (tmp_path / "data").exists(), "no data may be generated or read before the refusal"
