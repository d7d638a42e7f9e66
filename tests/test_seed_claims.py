"""The seed-claims tables of notebooks 01, 02 and 04 on tiny made-up evaluations with known verdicts."""

from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np
import pandas as pd

from adlib.pipelines import fanogan_views, hazelnut_views, unet_views
from adlib.thresholds import Threshold


def _verdicts(table: pd.DataFrame) -> dict[str, str]:
    return dict(zip(table["claim"], table["holds"], strict=True))


def _find(verdicts: dict[str, str], words: str) -> str:
    hits = [v for k, v in verdicts.items() if words in k]
    assert len(hits) == 1, (words, list(verdicts))
    return hits[0]


# --------------------------------------------------------------------------- notebook 01 (seed 000)


def _hazelnut_eval(masks: bool = True, variant: str = "l2", **metrics: float) -> NS:
    labels = np.array([0, 0, 1, 1])
    x = np.zeros((4, 3, 4, 4), np.float32)
    recon = x.copy()
    recon[2:] += 0.3  # defective images reconstructed worse
    gt = np.zeros((4, 4, 4), bool)
    gt[2:, :2, :2] = True
    # map scale = RMS ** 2: defect pixels RMS 0.3, a band of normal pixels RMS 0.14, the rest 0
    amap = np.zeros((4, 4, 4), np.float32)
    amap[:, 3, :] = 0.14 ** 2
    amap[gt] = 0.3 ** 2
    return NS(x=x, recon=recon, labels=labels, masks=gt if masks else None, maps=amap, variant=variant,
              pixel_thresholds={}, oracle_pixel=None,
              metrics={"image_auroc": 1.0, "pixel_f1": None, "pixel_precision": None, "pixel_recall": None,
                       **metrics})


def test_seed_000_claims_known_verdicts() -> None:
    data = NS(synthetic=True, split=NS(category="hazelnut"))
    l2 = _hazelnut_eval(pixel_f1=0.5)
    ssim = _hazelnut_eval(variant="ssim", pixel_f1=0.2, pixel_precision=0.9, pixel_recall=0.1)
    latent = pd.DataFrame({"latent_dim": [50, 500], "test_mse_good": [0.02, 0.01],
                           "test_mse_defective": [0.05, 0.012]}).set_index("latent_dim")
    table = hazelnut_views.seed_claims(data, l2, ssim, latent)
    v = _verdicts(table)
    assert _find(v, "defective images are reconstructed worse") == "holds"
    assert _find(v, "tau too high") == "holds"  # tau 0.7 predicts nothing: recall 0
    assert _find(v, "tau too low") == "holds"   # tau 0.1 also marks the normal band
    assert _find(v, "too small a latent") == "holds"
    assert _find(v, "too large a latent") == "holds"
    assert _find(v, "beats AE(SSIM)") == "holds"
    assert _find(v, "high precision but low recall") == "holds"
    assert set(table["data"]) == {"synthetic MVTec hazelnut stand-in"}
    assert all(table["source"].str.startswith("seed 000"))


def test_seed_000_claims_without_masks_or_latent_study() -> None:
    data = NS(synthetic=False, split=NS(category="bottle"))
    l2 = _hazelnut_eval(masks=False)
    l2.recon = l2.x.copy()  # reconstructs everything perfectly: no error gap
    v = _verdicts(hazelnut_views.seed_claims(data, l2, None, None))
    assert _find(v, "defective images are reconstructed worse") == "does not hold"
    assert _find(v, "tau too high misses") == "not checked"
    assert _find(v, "latent size trades") == "not checked"
    assert len(v) == 3


# --------------------------------------------------------------------------- notebook 02 (seed 002)


def _unet_eval(f1: float, precision: float, contrast: float, sensitive: bool) -> NS:
    gt = np.zeros((2, 10, 10), bool)
    gt[0, :2] = True  # 20 defect pixels
    amap = np.zeros((2, 10, 10))
    if sensitive:  # half the defect pixels just above tau, half just below tau * 1.1
        amap[0, 0] = 1.05
        amap[0, 1] = 1.2
    else:  # far from tau on both sides
        amap[0, :2] = 5.0
    return NS(masks=gt, maps=amap, pixel_threshold=Threshold(1.0, "normal-validation:test"),
              residual_contrast=contrast,
              metrics={"pixel_f1": f1, "pixel_precision": precision, "pixel_auroc": 0.9})


def test_seed_002_claims_known_verdicts() -> None:
    data = {"dagm": NS(synthetic=True, category="Class8"), "rsdd": NS(synthetic=False, category="type-I")}
    runs = {("dagm", "unet-ae"): (None, _unet_eval(0.9, 0.9, 5.0, sensitive=True)),
            ("dagm", "unet-ae-noskip"): (None, _unet_eval(0.8, 0.8, 3.0, sensitive=False)),
            ("rsdd", "unet-ae"): (None, _unet_eval(0.6, 0.5, 0.8, sensitive=False))}
    table = unet_views.seed_claims(runs, data, "unet-ae")
    both = "synthetic DAGM Class8 stand-in; real RSDDs type-I"
    dagm, rsdd = "synthetic DAGM Class8 stand-in", "real RSDDs type-I"

    def verdict(words: str, data: str) -> str:
        hits = table[table["claim"].str.contains(words, regex=False) & (table["data"] == data)]
        assert len(hits) == 1, (words, data, table[["claim", "data"]])
        return hits["holds"].iloc[0]

    assert verdict("F1 is higher on DAGM", both) == "holds"
    assert verdict("RSDDs results are noisier", both) == "holds"
    assert verdict("sensitive to the threshold", dagm) == "holds"
    assert verdict("sensitive to the threshold", rsdd) == "does not hold"
    assert verdict("keep large residuals", dagm) == "holds"
    assert verdict("keep large residuals", rsdd) == "does not hold"
    assert verdict("skip connections", dagm) == "holds"
    assert len(table) == 7  # no no-skip variant on RSDDs: no skip row there


def test_threshold_elasticity_values() -> None:
    el = unet_views.threshold_elasticity(_unet_eval(0.9, 0.9, 5.0, sensitive=True))
    # tau 0.9 and 1.0: all 20 defect pixels -> F1 1; tau 1.1: 10 of 20 -> F1 2/3
    assert el["f1"] == 1.0 and el["f1_low"] == 1.0
    np.testing.assert_allclose(el["f1_high"], 2 / 3)
    np.testing.assert_allclose(el["change"], 1 / 3)


def test_seed_002_claims_one_dataset_only() -> None:
    data = {"dagm": NS(synthetic=True, category="Class8")}
    runs = {("dagm", "unet-ae"): (None, _unet_eval(0.9, 0.9, 5.0, sensitive=False))}
    v = _verdicts(unet_views.seed_claims(runs, data, "unet-ae"))
    assert _find(v, "F1 is higher on DAGM") == "not checked"


# --------------------------------------------------------------------------- notebook 04 (seed 001)


def _gan_eval(auroc: float, ci: tuple[float, float] | None, recon: float) -> NS:
    return NS(metrics={"image_auroc": auroc}, ci95={"image_auroc": ci} if ci else {},
              labels=np.array([0, 1]), maps=np.full((2, 4, 4), recon))


def test_seed_001_claims_known_verdicts() -> None:
    data = {"bottle": NS(synthetic=True), "carpet": NS(synthetic=True)}
    evals = {"bottle": {"ae-256": _gan_eval(0.8, (0.7, 0.9), 0.1), "f-anogan": _gan_eval(0.9, (0.8, 1.0), 0.1)},
             "carpet": {"ae-256": _gan_eval(0.5, (0.3, 0.7), 0.2), "f-anogan": _gan_eval(0.45, (0.2, 0.6), 0.3)}}
    v = _verdicts(fanogan_views.seed_claims(data, evals))
    assert _find(v, "beats the autoencoder on bottle") == "holds"
    assert _find(v, "beats the autoencoder on carpet") == "does not hold"
    assert _find(v, "worse on carpet than on bottle") == "holds"
    assert _find(v, "fail on carpet") == "holds"
    assert _find(v, "restores bottle well") == "holds"
    evals["carpet"]["f-anogan"] = _gan_eval(0.95, (0.9, 1.0), 0.3)  # now clearly above chance
    v = _verdicts(fanogan_views.seed_claims(data, evals))
    assert _find(v, "fail on carpet") == "does not hold"
    assert _find(v, "worse on carpet than on bottle") == "does not hold"


def test_seed_001_claims_bottle_only() -> None:
    data = {"bottle": NS(synthetic=False)}
    evals = {"bottle": {"ae-256": _gan_eval(0.8, None, 0.1), "f-anogan": _gan_eval(0.7, None, 0.1)}}
    table = fanogan_views.seed_claims(data, evals)
    v = _verdicts(table)
    assert _find(v, "beats the autoencoder on bottle") == "does not hold"
    assert _find(v, "beats the autoencoder on carpet") == "not checked"
    assert _find(v, "worse on carpet than on bottle") == "not checked"
    assert "real MVTec bottle" in set(table["data"])


def test_seed_000_tau_claims_fall_back_to_ratios_around_the_validation_tau() -> None:
    data = NS(synthetic=True, split=NS(category="hazelnut"))
    l2 = _hazelnut_eval(pixel_f1=0.5)
    l2.maps = l2.maps / 10  # every residual below the seed's tau 0.2: the seed's taus predict nothing
    l2.threshold = Threshold(0.07 ** 2, "normal-validation:test")  # RMS 0.07, between band and defects
    table = hazelnut_views.seed_claims(data, l2, None, None)
    v = _verdicts(table)
    assert _find(v, "tau too high") == "holds"
    assert _find(v, "tau too low") == "holds"
    measured = " ".join(table["measured"])
    assert "ratios around the validation tau" in measured and "tau 0.245 vs 0.07" in measured
