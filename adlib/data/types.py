"""The sample type every reader returns (:class:`Sample`, :class:`Split`) and the data errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

GOOD = "good"
"""Defect type of defect-free samples."""


class DataError(ValueError):
    """A dataset is missing, incomplete or malformed.

    The message names the offending path, what was expected and how to fix it.
    """


class DownloadError(DataError):
    """A download or an extraction failed, was refused, or its checksum did not match."""


class DataWarning(UserWarning):
    """A dataset is usable but limited (e.g. no masks: image-level metrics only)."""


@dataclass(frozen=True)
class Sample:
    """One image of a dataset.

    Attributes:
        path: image file.
        label: 0 = defect-free, 1 = defective.
        defect: ``"good"`` for defect-free samples, else the defect type (folder name).
        mask_path: ground-truth mask file; ``None`` when absent (good sample, or no masks).
    """

    path: Path
    label: int
    defect: str
    mask_path: Path | None = None

    def load_image(self, channels: int | None = None) -> np.ndarray:
        """Decode the image as an HxWxC uint8 array (see :func:`adlib.data.io.read_image`)."""
        from adlib.data.io import read_image

        return read_image(self.path, channels=channels)

    def load_mask(self, shape: tuple[int, int] | None = None) -> np.ndarray | None:
        """Decode the mask as an HxW bool array, or ``None`` when the sample has no mask file."""
        if self.mask_path is None:
            return None
        from adlib.data.io import read_mask

        return read_mask(self.mask_path, shape=shape)

    def load_mask_or_empty(self, shape: tuple[int, int]) -> np.ndarray:
        """Like :meth:`load_mask`, but an all-False mask of ``shape`` when there is no mask file."""
        mask = self.load_mask(shape)
        return np.zeros(shape, dtype=bool) if mask is None else mask


@dataclass
class Split:
    """A dataset category split into defect-free training and labelled test samples.

    Attributes:
        dataset: ``"mvtec" | "dagm" | "rsdd" | "sem"``.
        category: ``"hazelnut"``, ``"Class8"``, ``"type-I"``, ``"nanofibres"``, ...
        root: the folder the reader was given.
        train: defect-free samples only.
        test: defect-free and defective samples.
        has_masks: False means only image-level metrics can be computed.
        channels: 1 or 3.
        extra: further sample lists or notes a reader keeps (e.g. DAGM's
            ``"train_defective"``: defective Train images, excluded from training).
    """

    dataset: str
    category: str
    root: Path
    train: list[Sample]
    test: list[Sample]
    has_masks: bool
    channels: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def defect_types(self) -> list[str]:
        """Sorted defect types of the test set, ``"good"`` excluded."""
        return sorted({s.defect for s in self.test if s.defect != GOOD})

    @property
    def test_labels(self) -> np.ndarray:
        """Test labels as an int array (1 = defective)."""
        return np.array([s.label for s in self.test], dtype=np.int64)

    def sample_lists(self) -> dict[str, list[Sample]]:
        """``train``, ``test`` and every list of samples held in :attr:`extra`, by name."""
        lists = {"train": self.train, "test": self.test}
        for key, value in self.extra.items():
            if isinstance(value, list) and value and all(isinstance(v, Sample) for v in value):
                lists[key] = value
        return lists

    def counts(self) -> pd.DataFrame:
        """Number of samples per defect type (rows) and split (columns), with totals."""
        import pandas as pd

        rows: dict[str, dict[str, int]] = {}
        for name, samples in self.sample_lists().items():
            for s in samples:
                rows.setdefault(s.defect, {}).setdefault(name, 0)
                rows[s.defect][name] += 1
        order = [GOOD] + sorted(d for d in rows if d != GOOD)
        columns = list(self.sample_lists())
        table = pd.DataFrame(
            [[rows.get(d, {}).get(c, 0) for c in columns] for d in order if d in rows],
            index=pd.Index([d for d in order if d in rows], name="defect"),
            columns=columns,
        )
        table.loc["total"] = table.sum()
        return table.astype(int)

    def summary(self) -> str:
        """One line: dataset, category, counts, masks and channels."""
        n_def = sum(s.label for s in self.test)
        return (
            f"{self.dataset}/{self.category}: {len(self.train)} train, {len(self.test)} test "
            f"({len(self.test) - n_def} good, {n_def} defective; types: "
            f"{', '.join(self.defect_types) or '-'}), masks: {'yes' if self.has_masks else 'no'}, "
            f"channels: {self.channels}, root: {self.root}"
        )

    def __repr__(self) -> str:
        return f"Split({self.summary()})"
