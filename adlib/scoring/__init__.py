"""Scoring new images with a trained model bundle (:mod:`adlib.bundle`), outside the notebooks.

Each model family has a :class:`~adlib.scoring.base.Scorer` that rebuilds the networks from the
bundle and turns images into anomaly maps and image scores with the same functions the notebook
used, so a notebook's test images get the notebook's scores back. The work is split in two:

* ``net``: a plain :class:`torch.nn.Module` from the image tensor to raw outputs (a reconstruction,
  patch distances, ...); this is the part :mod:`adlib.export` writes to ONNX;
* ``post``: numpy post-processing of those outputs into maps and scores (residual kind, smoothing,
  image-score rule), identical for the eager and the exported network.

:func:`load_scorer` picks the family's scorer; ``adlib score`` (:mod:`adlib.score_cli`) runs it
over a folder.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

from adlib.bundle import Bundle, BundleError, load_bundle

if TYPE_CHECKING:
    from adlib.scoring.base import Scorer

__all__ = ["FAMILIES", "load_scorer"]

FAMILIES: dict[str, str] = {
    "conv-ae": "adlib.scoring.recon:ConvAEScorer",
    "ae-256": "adlib.scoring.recon:AE256Scorer",
    "unet-ae": "adlib.scoring.recon:UNetScorer",
    "f-anogan": "adlib.scoring.gan:FAnoGANScorer",
    "patchcore": "adlib.scoring.features:PatchCoreScorer",
    "padim": "adlib.scoring.features:PadimScorer",
    "sem-patch": "adlib.scoring.sem:SemPatchScorer",
}
"""Bundle family -> ``module:class`` of its scorer (imported only when used)."""


def load_scorer(bundle: Bundle | str | os.PathLike, *, device: str = "cpu") -> Scorer:
    """The scorer of a bundle (a :class:`~adlib.bundle.Bundle` or the path of one).

    Raises:
        BundleError: unreadable bundle or a family this adlib does not know.
    """
    b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    target = FAMILIES.get(b.family)
    if target is None:
        raise BundleError(f"{b.path or 'bundle'}: model family {b.family!r} is unknown to this adlib "
                          f"(known: {', '.join(FAMILIES)}). Fix: score it with the adlib that wrote it.")
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)(b, device=device)
