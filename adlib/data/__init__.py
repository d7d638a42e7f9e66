"""Dataset readers (one per original layout), validation and patch tools.

Every reader returns a :class:`~adlib.data.types.Split` of :class:`~adlib.data.types.Sample` and
raises :class:`~adlib.data.types.DataError` naming the path, the expected layout and the fix.
The PyTorch side lives in :mod:`adlib.data.torchdata` (imported explicitly: it loads torch).
"""

from adlib.data.dagm import read_dagm
from adlib.data.io import read_image, read_mask
from adlib.data.mvtec import read_mvtec
from adlib.data.patches import PatchSet, grid_patches, patch_labels, random_patches
from adlib.data.rsdd import read_rsdd, rsdd_patches
from adlib.data.sem import read_sem, sem_patches
from adlib.data.types import DataError, DataWarning, Sample, Split
from adlib.data.validate import ValidationReport, validate_split

__all__ = [
    "DataError", "DataWarning", "PatchSet", "Sample", "Split", "ValidationReport",
    "grid_patches", "patch_labels", "random_patches", "read_dagm", "read_image", "read_mask",
    "read_mvtec", "read_rsdd", "read_sem", "rsdd_patches", "sem_patches", "validate_split",
]
