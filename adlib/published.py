"""Numbers printed in the four source projects (the seeds) and in the papers of chapter 06,
transcribed as printed, with source.

Each entry: ``seed, source, dataset, category, method, defect, level, metric, value, note``.
``metric`` uses the results-file names where the level matches (``image_auroc``, ``pixel_f1``,
...); seed 003 scores 32x32 patches, so its metrics are ``patch_*``. ``level`` says what was
counted (``"pixel"``, ``"image"``, ``"patch"``), ``"unstated"`` where the text does not say.

These are the authors' numbers on their data and settings, for context next to ours: they are
never targets that our code checks against.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["PUBLISHED", "published_table"]

_COLUMNS = ("seed", "source", "dataset", "category", "method", "defect", "level", "metric", "value", "note")


def _rows(seed, source, dataset, category, method, defect, level, note, **metrics) -> list[dict]:
    return [
        {"seed": seed, "source": source, "dataset": dataset, "category": category, "method": method,
         "defect": defect, "level": level, "metric": metric, "value": value, "note": note}
        for metric, value in metrics.items()
    ]


_S000 = "Section 6 (Conclusions), comparison table"
_N000 = "fixed threshold tau on an L2 residual map; the text shows tau = 0.1, 0.2, 0.7"
_N000_OTHERS = ("rows for other methods as printed in seed 000, which attributes them to "
                "Bergmann et al.; the defect type is not given")
_N000_SWAP = ("printed F1 disagrees with 2PR/(P+R) from the printed P and R (the cut and hole F1 "
              "values look swapped); transcribed as printed")

_S001 = "Comparison & Limit table (also in the Results sections)"
_S002 = "Table 1 (F1 score values)"
_N002 = ("residual maps thresholded into segmentation masks; the text does not say whether F1 "
         "counts pixels or patches; abstract: average F1 0.885 over the two data sets")
_N003 = "32x32 patches; thresholds picked at the highest F1 on the test data (oracle)"

PUBLISHED: list[dict] = [
    # seed 000: conv AE (L2) on MVTec hazelnut, per defect type
    *_rows("000", _S000, "mvtec", "hazelnut", "conv-ae-l2 (seed 000)", "print", "pixel", _N000,
           pixel_recall=0.22, pixel_precision=0.82, pixel_f1=0.35),
    *_rows("000", _S000, "mvtec", "hazelnut", "conv-ae-l2 (seed 000)", "crack", "pixel", _N000,
           pixel_recall=0.26, pixel_precision=0.57, pixel_f1=0.36),
    *_rows("000", _S000, "mvtec", "hazelnut", "conv-ae-l2 (seed 000)", "cut", "pixel",
           f"{_N000}; {_N000_SWAP}", pixel_recall=0.69, pixel_precision=0.8, pixel_f1=0.57),
    *_rows("000", _S000, "mvtec", "hazelnut", "conv-ae-l2 (seed 000)", "hole", "pixel",
           f"{_N000}; {_N000_SWAP}", pixel_recall=0.55, pixel_precision=0.61, pixel_f1=0.75),
    *_rows("000", _S000, "mvtec", "hazelnut", "AE (SSIM)", None, "unstated", _N000_OTHERS,
           recall=0.08, precision=1.0, f1=0.15),
    *_rows("000", _S000, "mvtec", "hazelnut", "AE (L2)", None, "unstated", _N000_OTHERS,
           recall=0.84, precision=0.93, f1=0.88),
    *_rows("000", _S000, "mvtec", "hazelnut", "AnoGAN", None, "unstated", _N000_OTHERS,
           recall=0.16, precision=0.83, f1=0.27),
    *_rows("000", _S000, "mvtec", "hazelnut", "CNN feature dictionary", None, "unstated", _N000_OTHERS,
           recall=0.07, precision=0.9, f1=0.13),
    # seed 001: image-level ROC-AUC / PR-AUC on MVTec bottle and carpet
    *_rows("001", _S001, "mvtec", "bottle", "autoencoder", None, "image", "image size 256, 300 epochs",
           image_auroc=0.846, image_aupr=0.942),
    *_rows("001", _S001, "mvtec", "carpet", "autoencoder", None, "image", "image size 256, 300 epochs",
           image_auroc=0.439, image_aupr=0.7),
    *_rows("001", _S001, "mvtec", "bottle", "f-anogan", None, "image", "image size 64",
           image_auroc=0.922, image_aupr=0.977),
    *_rows("001", _S001, "mvtec", "carpet", "f-anogan", None, "image", "image size 64",
           image_auroc=0.552, image_aupr=0.828),
    # seed 002: U-Net-like AE, thresholded residuals
    *_rows("002", _S002, "dagm", "Class8", "unet-ae", None, "unstated", _N002, f1=0.96),
    *_rows("002", _S002, "rsdd", "type-I", "unet-ae", None, "unstated", _N002, f1=0.81),
]

_S003 = {
    1: "Table 1 (autoencoder reconstruction alone)",
    2: "Table 2 (denoiser network as reconstruction smoother)",
    3: "Table 3 (denoiser network feature mask)",
}
_V003 = {1: "", 2: " + denoiser (smooth)", 3: " + denoiser (feature mask)"}
# (table, model): AUROC, precision, recall, F1 exactly as printed
_T003 = {
    (1, "SAE"): (0.63934, 0.15418, 0.24354, 0.18882),
    (1, "DAE"): (0.61357, 0.12040, 0.28527, 0.16933),
    (1, "CVAE"): (0.70764, 0.19773, 0.31233, 0.24216),
    (2, "SAE"): (0.78648, 0.26277, 0.41507, 0.32181),
    (2, "DAE"): (0.75003, 0.22560, 0.35636, 0.27629),
    (2, "CVAE"): (0.71852, 0.21012, 0.33190, 0.25733),
    (3, "SAE"): (0.76437, 0.55964, 0.35361, 0.43338),
    (3, "DAE"): (0.80022, 0.60295, 0.38098, 0.46692),
    (3, "CVAE"): (0.68515, 0.18650, 0.29460, 0.22841),
}


def _seed003() -> list[dict]:
    rows: list[dict] = []
    for (table, model), (auc, p, r, f1) in _T003.items():
        rows += _rows("003", _S003[table], "sem", "nanofibres", f"{model}{_V003[table]}", None,
                      "patch", _N003, patch_auroc=auc, patch_precision=p, patch_recall=r, patch_f1=f1)
    return rows


PUBLISHED += _seed003()

# PatchCore paper (Roth et al., CVPR 2022), for chapter 06's methods. ``seed`` names the paper.
_SPC = ("Roth et al. 2022 (PatchCore), supplementary Tables S1-S3: PatchCore-25 %, "
        "WideResNet-50, 224 px")
_NPC = "image AUROC (image level), pixel AUROC and AUPRO (pixel level); MVTec AD test split"
PUBLISHED += [
    *_rows("PatchCore", _SPC, "mvtec", "bottle", "patchcore-wrn50 (paper)", None, "image+pixel", _NPC,
           image_auroc=1.000, pixel_auroc=0.986, aupro=0.962),
    *_rows("PatchCore", _SPC, "mvtec", "screw", "patchcore-wrn50 (paper)", None, "image+pixel", _NPC,
           image_auroc=0.981, pixel_auroc=0.994, aupro=0.979),
    *_rows("PatchCore", _SPC, "mvtec", "transistor", "patchcore-wrn50 (paper)", None, "image+pixel", _NPC,
           image_auroc=1.000, pixel_auroc=0.963, aupro=0.837),
]


def published_table(seed: str | None = None, dataset: str | None = None) -> pd.DataFrame:
    """The published numbers as a DataFrame, optionally filtered by seed (``"000"``) or dataset."""
    df = pd.DataFrame(PUBLISHED, columns=list(_COLUMNS))
    if seed is not None:
        df = df[df["seed"] == str(seed).zfill(3)]
    if dataset is not None:
        df = df[df["dataset"] == dataset]
    return df.reset_index(drop=True)
