"""PyTorch datasets and loaders: every image decoded and resized once, augmented as a tensor.

Items are dicts: ``{"image": float (C, H, W) in [0, 1], "label": int64, "index": int64}`` plus
``"mask": float (1, H, W) in {0, 1}`` with ``with_masks=True``. Augmentations are seeded per item
through :class:`SeededSampler` (used by :func:`make_loader`), so a seed gives the same batches
whatever the number of workers, and every epoch draws new augmentations. Loaders fetch whole
batches (``__getitems__``: one stack, one float conversion, augmentation on the batch), which
gives exactly the values of collating single items.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate
from tqdm.auto import tqdm

from adlib.data.augment import (  # noqa: F401 - re-exported: torchdata is where users look
    RandomAugment,
    SizeLike,
    _size,
    resize_image,
    resize_mask,
)
from adlib.data.io import convert_channels, read_image
from adlib.data.types import Sample
from adlib.data.validate import ValidationReport


class _AugmentedDataset(Dataset):
    """Shared item access: uint8 tensors -> float, seeded augmentation, dict item.

    ``__getitem__`` builds one item; ``__getitems__`` (called by ``DataLoader`` with a batch of
    sampler keys) builds the whole batch at once and gives exactly the collated items.
    """

    augment: RandomAugment | None
    with_masks: bool

    def __init__(self, augment: RandomAugment | None, with_masks: bool, seed: int) -> None:
        self.augment = augment
        self.with_masks = with_masks
        self._generator = torch.Generator().manual_seed(seed)

    def _load(self, index: int) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        raise NotImplementedError

    def _load_many(
        self, indices: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor] | None:
        """Stacked uint8 images, float masks (with ``with_masks``) and int64 labels of
        ``indices``; None when the images differ in size (no common batch shape)."""
        loaded = [self._load(i) for i in indices]
        shapes = {tuple(image.shape) for image, _, _ in loaded}
        if len(shapes) != 1:
            return None
        images = torch.stack([image for image, _, _ in loaded])
        masks = None
        if self.with_masks:
            empty = torch.zeros((1, *images.shape[-2:]))
            masks = torch.stack([m.float() if m is not None else empty for _, m, _ in loaded])
        labels = torch.tensor([label for _, _, label in loaded], dtype=torch.int64)
        return images, masks, labels

    def _item_generator(self, seed: int | None) -> torch.Generator:
        return torch.Generator().manual_seed(seed) if seed is not None else self._generator

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        """Item ``key`` (an index, or ``(index, augmentation seed)`` from :class:`SeededSampler`)."""
        index, seed = _split_key(key)
        image_u8, mask, label = self._load(index)
        image = image_u8.float().div_(255.0)
        maskf = mask.float() if mask is not None else None
        if self.augment is not None:
            image, maskf = self.augment(image, maskf, generator=self._item_generator(seed))
        item = {"image": image, "label": torch.tensor(label, dtype=torch.int64),
                "index": torch.tensor(index, dtype=torch.int64)}
        if self.with_masks:
            item["mask"] = maskf if maskf is not None else torch.zeros((1, *image.shape[-2:]))
        return item

    def __getitems__(self, keys: Sequence[int | tuple[int, int]]) -> list[dict] | _Batch:
        """A whole batch at once: images stacked and converted to float once, augmentation
        applied to the batch (:meth:`RandomAugment.apply_batch`).

        Gives exactly the batch that collating the single items would give (same per-item
        seeds, same draws); images of different sizes fall back to single items.
        """
        parsed = [_split_key(k) for k in keys]
        indices = [index for index, _ in parsed]
        loaded = self._load_many(indices) if indices else None
        if loaded is None:
            return [self[k] for k in keys]
        images_u8, masks, labels = loaded
        images = images_u8.float().div_(255.0)
        if self.augment is not None:
            gens = [self._item_generator(seed) for _, seed in parsed]
            images, masks = self.augment.apply_batch(images, masks, gens)
        batch = _Batch(image=images, label=labels, index=torch.tensor(indices, dtype=torch.int64))
        if self.with_masks:
            batch["mask"] = masks
        return batch


def _split_key(key: int | tuple[int, int]) -> tuple[int, int | None]:
    """``(index, augmentation seed or None)`` of a sampler key."""
    if isinstance(key, tuple):
        return int(key[0]), int(key[1])
    return int(key), None


class ImageDataset(_AugmentedDataset):
    """Images of a list of :class:`Sample`, decoded and resized once (cached as uint8).

    Args:
        samples: e.g. ``split.train`` or ``split.test``.
        image_size: output size (int or (H, W)); None keeps the stored size.
        channels: 1 or 3 (None: as stored).
        augment: tensor augmentation (training only; never on test data).
        with_masks: also return masks (all-zero for samples without a mask file).
        cache: decode everything now (True) or on every access (False; same values).
        decoded: a :class:`ValidationReport` from ``validate_split(..., keep_arrays=True)``
            whose arrays are reused instead of decoding again.
        seed: seed for augmentations when items are fetched by plain index.
        progress: progress bar while caching.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        image_size: SizeLike = None,
        channels: int | None = None,
        augment: RandomAugment | None = None,
        with_masks: bool = False,
        *,
        cache: bool = True,
        decoded: ValidationReport | None = None,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        super().__init__(augment, with_masks, seed)
        self.samples = list(samples)
        self.image_size = _size(image_size)
        self.channels = channels
        self._decoded = decoded
        self._images: list[torch.Tensor] | None = None
        self._masks: list[torch.Tensor | None] | None = None
        if cache:
            images, masks = [], []
            for i in tqdm(range(len(self.samples)), desc="decode", unit="img",
                          disable=not progress, leave=False):
                image, mask = self._decode(i)
                images.append(image)
                masks.append(mask)
            self._images, self._masks = images, masks
            self._decoded = None  # the arrays are now held as tensors

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> np.ndarray:
        """Labels of all samples (1 = defective)."""
        return np.array([s.label for s in self.samples], dtype=np.int64)

    def _decode(self, index: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        s = self.samples[index]
        arr = self._decoded.images.get(Path(s.path)) if self._decoded is not None else None
        arr = read_image(s.path) if arr is None else arr
        arr = convert_channels(arr, self.channels, s.path)
        image = resize_image(torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1),
                             self.image_size)
        if not self.with_masks:
            return image.contiguous(), None
        mask_arr = None
        if self._decoded is not None and s.mask_path is not None:
            mask_arr = self._decoded.masks.get(Path(s.mask_path))
        if mask_arr is None:
            mask_arr = s.load_mask_or_empty(arr.shape[:2])
        mask = resize_mask(torch.from_numpy(mask_arr)[None], self.image_size)
        return image.contiguous(), mask.contiguous()

    def _load(self, index: int) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        if self._images is not None and self._masks is not None:
            image, mask = self._images[index], self._masks[index]
        else:
            image, mask = self._decode(index)
        return image, mask, int(self.samples[index].label)

    def images_uint8(self) -> torch.Tensor:
        """All images as one (N, C, H, W) uint8 tensor (needs a fixed ``image_size``)."""
        return torch.stack([self._load(i)[0] for i in range(len(self))])


class PatchDataset(_AugmentedDataset):
    """Patches held in memory (e.g. :class:`adlib.data.patches.PatchSet` arrays).

    Args:
        patches: (N, H, W) or (N, H, W, C) uint8 array.
        labels: (N,) 0/1 labels (default all 0).
        masks: (N, H, W) bool masks (required for ``with_masks``; default all False).
        augment: tensor augmentation (training only).
        with_masks: also return masks.
        seed: seed for augmentations when items are fetched by plain index.
    """

    def __init__(
        self,
        patches: np.ndarray,
        labels: np.ndarray | None = None,
        masks: np.ndarray | None = None,
        augment: RandomAugment | None = None,
        with_masks: bool = False,
        *,
        seed: int = 0,
    ) -> None:
        super().__init__(augment, with_masks, seed)
        arr = np.asarray(patches)
        if arr.dtype != np.uint8:
            raise TypeError(f"patches must be uint8, got {arr.dtype}")
        arr = arr[..., None] if arr.ndim == 3 else arr
        self._images = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2)
        n = len(arr)
        self._labels = np.zeros(n, np.int64) if labels is None else np.asarray(labels, np.int64)
        self._masks = None if masks is None else torch.from_numpy(np.asarray(masks, bool))[:, None]
        if len(self._labels) != n or (self._masks is not None and len(self._masks) != n):
            raise ValueError("patches, labels and masks must have the same length")

    def __len__(self) -> int:
        return len(self._images)

    @property
    def labels(self) -> np.ndarray:
        """Labels of all patches."""
        return self._labels

    def _load(self, index: int) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        mask = self._masks[index] if self._masks is not None else None
        return self._images[index], mask, int(self._labels[index])

    def _load_many(
        self, indices: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        index = torch.tensor(indices, dtype=torch.int64)
        images = self._images[index]
        masks = None
        if self.with_masks:
            masks = (self._masks[index].float() if self._masks is not None
                     else torch.zeros((len(index), 1, *images.shape[-2:])))
        return images, masks, torch.from_numpy(self._labels[index.numpy()])


class _Batch(dict):
    """A batch already assembled by a dataset's ``__getitems__`` (passed through by collate)."""


def _collate(items: list | _Batch):
    """Default collation, except for batches a dataset assembled itself."""
    return dict(items) if isinstance(items, _Batch) else default_collate(items)


class Repeated(Dataset):
    """``factor`` passes over a dataset per epoch (on-the-fly augmentation: every pass draws new
    augmentations, since each item gets its own seed from :class:`SeededSampler`).

    Item ``i`` is ``base[i % len(base)]``; keys ``(index, seed)`` keep their seed, and batches are
    fetched through ``base.__getitems__`` when the base dataset has it.
    """

    def __init__(self, base: Dataset, factor: int) -> None:
        if int(factor) < 1:
            raise ValueError(f"factor must be >= 1, got {factor}")
        if len(base) == 0:  # type: ignore[arg-type]
            raise ValueError("cannot repeat an empty dataset")
        self.base, self.factor = base, int(factor)

    def __len__(self) -> int:
        return len(self.base) * self.factor  # type: ignore[arg-type]

    def _base_key(self, key: int | tuple[int, int]) -> int | tuple[int, int]:
        n = len(self.base)  # type: ignore[arg-type]
        if isinstance(key, tuple):
            return int(key[0]) % n, int(key[1])
        return int(key) % n

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        """Item ``key`` of the repeated dataset (an index or ``(index, seed)``)."""
        return self.base[self._base_key(key)]

    def __getitems__(self, keys: Sequence[int | tuple[int, int]]) -> list | _Batch:
        """A batch, assembled by the base dataset when it can (see ``_AugmentedDataset``)."""
        base_keys = [self._base_key(k) for k in keys]
        getitems = getattr(self.base, "__getitems__", None)
        if getitems is not None:
            return getitems(base_keys)
        return [self.base[k] for k in base_keys]


class SeededSampler(Sampler):
    """Yields ``(index, augmentation seed)``; order and seeds come from one seeded generator.

    Iterating again (next epoch) continues the generator: new order and new augmentations,
    reproducible from ``seed``, independent of the number of workers.
    """

    def __init__(self, n: int, shuffle: bool, seed: int = 0) -> None:
        self.n, self.shuffle = n, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = (torch.randperm(self.n, generator=self.generator) if self.shuffle
                 else torch.arange(self.n))
        seeds = torch.randint(0, 2**62, (self.n,), generator=self.generator)
        return iter(zip(order.tolist(), seeds.tolist(), strict=True))


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS/Windows
        return os.cpu_count() or 1


def auto_workers(n_items: int, min_items: int = 256) -> int:
    """Loader workers: 0 for small datasets or <= 2 cores, else cores - 1 (at most 8)."""
    cores = available_cores()
    if n_items < min_items or cores <= 2:
        return 0
    return min(8, cores - 1)


_STOCK_DATASETS = (torch.utils.data.TensorDataset, torch.utils.data.Subset,
                   torch.utils.data.ConcatDataset)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def make_loader(
    dataset: Dataset,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int | str = "auto",
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader with reproducible order and augmentations (:class:`SeededSampler`).

    Args:
        dataset: an :class:`ImageDataset`, a :class:`PatchDataset`, or a wrapper whose
            ``__getitem__`` accepts ``(index, seed)`` keys (augmentations seeded per item); torch's
            ``TensorDataset``/``Subset``/``ConcatDataset`` get plain indices (seeded order only).
        batch_size: items per batch.
        shuffle: new random order each epoch (training); False for evaluation.
        seed: seeds order and augmentations.
        num_workers: ``"auto"`` (see :func:`auto_workers`) or a number.
        drop_last: drop the last incomplete batch.
    """
    workers = auto_workers(len(dataset)) if num_workers == "auto" else int(num_workers)
    if not isinstance(dataset, _STOCK_DATASETS):
        sampler: Sampler = SeededSampler(len(dataset), shuffle, seed)
    else:  # torch's own datasets take plain indices: seeded order only
        gen = torch.Generator().manual_seed(seed)
        sampler = (torch.utils.data.RandomSampler(dataset, generator=gen) if shuffle
                   else torch.utils.data.SequentialSampler(dataset))
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler,
        num_workers=workers, drop_last=drop_last, pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0, worker_init_fn=_worker_init if workers else None,
        collate_fn=_collate,
    )


def holdout(
    samples: Sequence[Sample], fraction: float = 0.1, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Split defect-free training samples into (train, validation), deterministically.

    The split is drawn over the sorted unique file paths, so it does not depend on the input
    order, and a file listed twice stays on one side: no path is ever in both.

    Args:
        samples: e.g. ``split.train``.
        fraction: share for validation (at least 1 sample when > 0; at least 1 left to train).
        seed: seed of the draw.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    samples = list(samples)
    paths = sorted({str(Path(s.path).resolve()) for s in samples})
    if fraction == 0.0 or not paths:
        return samples, []
    if len(paths) < 2:
        raise ValueError("holdout needs at least 2 distinct files to keep one for training.")
    n_val = min(max(1, round(fraction * len(paths))), len(paths) - 1)
    chosen = np.random.default_rng(seed).permutation(len(paths))[:n_val]
    val_paths = {paths[i] for i in chosen}
    train = [s for s in samples if str(Path(s.path).resolve()) not in val_paths]
    val = [s for s in samples if str(Path(s.path).resolve()) in val_paths]
    assert not ({str(Path(s.path).resolve()) for s in train} & val_paths)
    return train, val
