"""Error analysis of notebook 03 (SEM patches) at the honest threshold, on top of
:mod:`adlib.error_analysis`.

The SEM test images all contain defects, so an image-level false positive does not exist: the
unit is the TEST PATCH. :func:`patch_view` turns a :class:`~sem_patches.PatchEvaluation` into
the per-patch view the generic functions read (patch images, the stitched map cropped to the
patch, the patch's mask), so :func:`adlib.error_analysis.error_gallery` shows false-positive and
false-negative patches and :func:`adlib.error_analysis.detection_by_area` the detection rate of
anomalous patches against the share of the patch that is defect. :func:`defect_detection` adds
the view per DEFECT (connected mask region): is at least one patch that overlaps it flagged?
:func:`brightness_matched` asks WHY a score misses defects: it compares each defect patch with
defect-free patches of the same brightness, for small and large defect regions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from adlib import metrics
from adlib.pipelines.sem_patches import Data, PatchEvaluation

PATCH_AREA_EDGES: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
"""Buckets of the defect share of a patch (anomalous patches have at least ``label_min_fraction``)."""

DEFECT_AREA_EDGES: tuple[int, ...] = (0, 150, 400, 1500, 5000, 20000, 10**7)
"""Buckets of the area of one defect region, in pixels."""


@dataclass
class PatchView:
    """The fields :mod:`adlib.error_analysis` reads, one entry per test patch."""

    method: str
    scores: np.ndarray
    labels: np.ndarray
    defects: list[str]
    paths: list[str]
    image_threshold: Any
    maps: np.ndarray
    masks: np.ndarray


def patch_view(ev: PatchEvaluation, data: Data) -> PatchView:
    """The per-patch view of one method: its scores, labels and threshold; the stitched map
    cropped to each patch (``maps``) and each patch's ground truth (``masks``)."""
    size = data.patch_size
    crops = np.stack([ev.image_maps[i][y:y + size, x:x + size]
                      for i, (y, x) in zip(data.patches.test_source, data.patches.test_coords, strict=True)])
    return PatchView(ev.method, np.asarray(ev.scores), np.asarray(ev.labels), data.patch_defects(),
                     data.patch_paths(), ev.image_threshold, crops, data.patches.test_masks.astype(bool))


def defect_detection(ev: PatchEvaluation, data: Data,
                     edges: tuple[int, ...] = DEFECT_AREA_EDGES) -> pd.DataFrame:
    """Detection rate per DEFECT (a connected region of a test mask) against its area in pixels.

    A defect counts as detected when at least one test patch that overlaps it scores above the
    honest (validation) threshold.

    Returns:
        One row per non-empty bucket: ``bucket`` (pixels), ``n`` defects, ``detected``, ``rate``.
    """
    predicted = np.asarray(ev.scores) > ev.image_threshold.value
    size, rows = data.patch_size, []
    for i, mask in enumerate(data.test_masks()):
        regions, n = ndimage.label(mask)
        if not n:
            continue
        mine = np.flatnonzero(data.patches.test_source == i)
        hit = np.zeros(n + 1, bool)
        for k in mine[predicted[mine]]:
            y, x = data.patches.test_coords[k]
            hit[np.unique(regions[y:y + size, x:x + size])] = True
        areas = ndimage.sum(mask, regions, range(1, n + 1))
        rows += [{"area": float(a), "detected": bool(hit[j + 1])} for j, a in enumerate(areas)]
    per = pd.DataFrame(rows, columns=["area", "detected"])
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (per["area"] > lo) & (per["area"] <= hi)
        if sel.any():
            label = f"{lo}-{hi} px" if hi < edges[-1] else f"> {lo} px"
            out.append({"bucket": label, "n": int(sel.sum()), "detected": int(per["detected"][sel].sum())})
    table = pd.DataFrame(out, columns=["bucket", "n", "detected"])
    table["rate"] = table["detected"] / table["n"]
    return table.set_index("bucket")


LARGE_DEFECT_PX = 600
"""Defect regions of at least this many pixels count as "large" in :func:`brightness_matched`
(on the stand-in: films; smaller ones are beads and spindles)."""


def patch_defect_size(data: Data, large_px: int = LARGE_DEFECT_PX) -> np.ndarray:
    """Per test patch: ``"normal"``, or ``"small"`` / ``"large"`` by the largest defect region
    (connected mask component) it overlaps, at ``large_px`` pixels."""
    size, out = data.patch_size, np.full(len(data.labels), "normal", dtype=object)
    for i, mask in enumerate(data.test_masks()):
        regions, n = ndimage.label(mask)
        areas = np.concatenate([[0.0], ndimage.sum(mask, regions, range(1, n + 1))]) if n else np.zeros(1)
        for k in np.flatnonzero((data.patches.test_source == i) & (data.labels == 1)):
            y, x = data.patches.test_coords[k]
            out[k] = "large" if areas[regions[y:y + size, x:x + size]].max() >= large_px else "small"
    return out


def brightness_matched(evals: list[PatchEvaluation], data: Data, bins: int = 10,
                       large_px: int = LARGE_DEFECT_PX) -> pd.DataFrame:
    """How much higher each method scores defect patches than DEFECT-FREE patches OF THE SAME
    BRIGHTNESS, for small and large defect regions.

    The normal test patches are cut into ``bins`` brightness bins (quantiles of the patch mean);
    each defect patch's score is divided by the median score of the normal patches in its bin.
    A median ratio below 1 means the method finds the defect MORE normal than defect-free texture
    just as bright: no threshold can then find it without flagging that texture. The brightness
    row (the patch mean itself) is the model-free reference.

    Returns:
        One row per method (and ``brightness (no model)``); per size: patches ``n``, ``AUROC``
        against all normal patches, and the median brightness-matched ratio.
    """
    x = np.asarray(data.patches.test, np.float64).reshape(len(data.labels), -1).mean(axis=1) / 255.0
    group = patch_defect_size(data, large_px)
    normal = group == "normal"
    edges = np.quantile(x[normal], np.linspace(0, 1, bins + 1)[1:-1])
    where = np.searchsorted(edges, x)
    scores = {"brightness (no model)": x} | {ev.method: np.asarray(ev.scores, np.float64) for ev in evals}
    rows = []
    for name, s in scores.items():
        ref = np.array([np.median(s[normal & (where == b)]) if (normal & (where == b)).any() else np.nan
                        for b in range(bins)])
        row: dict[tuple[str, str], float | int | None] = {}
        for size in ("small", "large"):
            sel = group == size
            both = normal | sel
            row[(size, "n")] = int(sel.sum())
            row[(size, "AUROC")] = metrics.image_auroc(s[both], sel[both].astype(int)) if sel.any() else None
            ratio = s[sel] / np.maximum(ref[where[sel]], 1e-12)
            row[(size, "x matched normals")] = float(np.nanmedian(ratio)) if sel.any() else None
        rows.append(pd.Series(row, name=name))
    table = pd.DataFrame(rows)
    for size in ("small", "large"):
        table[(size, "n")] = table[(size, "n")].astype(int)
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=[f"defect region (large >= {large_px} px)", ""])
    return table
