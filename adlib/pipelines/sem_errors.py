"""Error analysis of notebook 03 (SEM patches) at the honest threshold, on top of
:mod:`adlib.error_analysis`.

The SEM test images all contain defects, so an image-level false positive does not exist: the
unit is the TEST PATCH. :func:`patch_view` turns a :class:`~sem_patches.PatchEvaluation` into
the per-patch view the generic functions read (patch images, the stitched map cropped to the
patch, the patch's mask), so :func:`adlib.error_analysis.error_gallery` shows false-positive and
false-negative patches and :func:`adlib.error_analysis.detection_by_area` the detection rate of
anomalous patches against the share of the patch that is defect. :func:`defect_detection` adds
the view per DEFECT (connected mask region): is at least one patch that overlaps it flagged?
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

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
