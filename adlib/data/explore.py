"""Dataset exploration helpers for notebook 00: counts, sizes, sample grids, defect areas, histograms.

Every function takes a :class:`~adlib.data.types.Split` (what any reader returns), so the same
plots serve the real datasets and their synthetic stand-ins.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from adlib.data.types import Sample, Split

FAMILIES: tuple[str, ...] = ("mvtec", "dagm", "rsdd", "sem")
ALL_SYNTHETIC: tuple[tuple[str, str | None], ...] = (
    ("mvtec", "hazelnut"), ("mvtec", "bottle"), ("mvtec", "carpet"),
    ("dagm", "Class8"), ("rsdd", None), ("sem", None),
)
"""Every synthetic family and category, explored when ``DATASET = "all"``."""


def families(dataset: str, category: str | None, data_root: str | Path | None) -> list[tuple[str, str | None]]:
    """The (dataset, category) pairs a notebook run explores.

    Raises:
        ValueError: unknown dataset, or ``"all"`` together with a real ``data_root``.
    """
    if dataset == "all":
        if data_root is not None:
            raise ValueError('DATASET = "all" explores the synthetic stand-ins only: set DATA_ROOT = None, '
                             "or name one dataset (mvtec, dagm, rsdd, sem) for a real folder.")
        return list(ALL_SYNTHETIC)
    if dataset not in FAMILIES:
        raise ValueError(f"Unknown DATASET {dataset!r}: expected one of {', '.join(FAMILIES)} or 'all'.")
    return [(dataset, category)]


def load_split(
    dataset: str,
    category: str | None = None,
    data_root: str | Path | None = None,
    *,
    size: str = "default",
    seed: int = 0,
) -> Split:
    """Read a dataset with its reader: the real one under ``data_root``, else the synthetic stand-in.

    Args:
        dataset: ``"mvtec"``, ``"dagm"``, ``"rsdd"`` or ``"sem"``.
        category: MVTec category or DAGM class; ``None`` for the family's default.
        data_root: folder holding the dataset in its original layout; ``None`` = synthetic.
        size: synthetic size (``"tiny"`` or ``"default"``), ignored for real data.
        seed: synthetic seed, ignored for real data.
    """
    from adlib.data import synthetic

    category = category or synthetic.DEFAULT_CATEGORY[dataset]
    root = Path(data_root) if data_root is not None else None
    if root is None:
        root = synthetic.ensure_synthetic(dataset, category, size=size, seed=seed)
    if dataset == "mvtec":
        from adlib.data.mvtec import read_mvtec

        return read_mvtec(root, category)
    if dataset == "dagm":
        from adlib.data.dagm import read_dagm

        return read_dagm(root, category)
    if dataset == "rsdd":
        from adlib.data.rsdd import read_rsdd

        return read_rsdd(root)
    if dataset == "sem":
        from adlib.data.sem import read_sem

        return read_sem(root)
    raise ValueError(f"Unknown dataset {dataset!r}: expected one of {', '.join(FAMILIES)}.")


def _groups(split: Split) -> dict[str, list[Sample]]:
    groups = {"train": list(split.train), "test": list(split.test)}
    for name, value in split.extra.items():
        if isinstance(value, list) and value and isinstance(value[0], Sample):
            groups[name] = value
    return groups


def split_counts(split: Split) -> pd.DataFrame:
    """Images per split and defect type, with how many have a mask file."""
    rows = [
        {"split": name, "defect": s.defect, "label": s.label, "has_mask": s.mask_path is not None}
        for name, samples in _groups(split).items()
        for s in samples
    ]
    if not rows:
        return pd.DataFrame(columns=["split", "defect", "images", "with_mask"])
    frame = pd.DataFrame(rows)
    return (
        frame.groupby(["split", "defect"], sort=False)
        .agg(images=("label", "size"), with_mask=("has_mask", "sum"))
        .reset_index()
    )


def image_sizes(split: Split) -> pd.DataFrame:
    """How many images have each (height, width, channels), from file headers only."""
    from adlib.data.io import probe_image

    shapes = [probe_image(s.path) for samples in _groups(split).values() for s in samples]
    frame = pd.DataFrame(shapes, columns=["height", "width", "channels"])
    return frame.value_counts().rename("images").reset_index()


def _pick(samples: list[Sample], n: int, rng: np.random.Generator) -> list[Sample]:
    if len(samples) <= n:
        return list(samples)
    return [samples[i] for i in sorted(rng.choice(len(samples), n, replace=False))]


def _show(ax, image: np.ndarray, mask: np.ndarray | None, display_size: int | None) -> None:
    from PIL import Image

    if display_size is not None and image.shape[0] != display_size:
        pil = Image.fromarray(image.squeeze())
        image = np.asarray(pil.resize((display_size, display_size), Image.BILINEAR))
        if mask is not None:
            mask = np.asarray(Image.fromarray(mask).resize((display_size, display_size), Image.NEAREST))
    ax.imshow(image.squeeze(), cmap="gray" if image.ndim == 2 or image.shape[-1] == 1 else None,
              vmin=0, vmax=255)
    if mask is not None and mask.any():
        ax.contour(mask, levels=[0.5], colors="lime", linewidths=1.0)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_samples(split: Split, n_per_group: int = 4, *, seed: int = 0, display_size: int | None = None):
    """Grid of random images: one row per defect type (``good`` from train first), masks outlined.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    rows = [("train / good", split.train)]
    for defect in ["good", *split.defect_types]:
        rows.append((f"test / {defect}", [s for s in split.test if s.defect == defect]))
    rows = [(name, _pick(samples, n_per_group, rng)) for name, samples in rows if samples]
    width = 3.2 if split.dataset != "rsdd" else 1.2
    height = 2.4 if split.dataset != "rsdd" else 6.0
    fig, axes = plt.subplots(len(rows), n_per_group, figsize=(width * n_per_group, height * len(rows)),
                             squeeze=False)
    for r, (name, samples) in enumerate(rows):
        for c in range(n_per_group):
            ax = axes[r, c]
            if c >= len(samples):
                ax.axis("off")
                continue
            sample = samples[c]
            image = sample.load_image()
            _show(ax, image, sample.load_mask(image.shape[:2]), display_size)
            ax.set_title(f"{name}\n{sample.path.name}" if c == 0 else sample.path.name, fontsize=8)
    fig.suptitle(f"{split.dataset} / {split.category}" + ("" if split.has_masks else " (no masks)"))
    fig.tight_layout()
    return fig


def defect_areas(split: Split) -> pd.DataFrame:
    """Per defective test image with a mask: defect type and defect area (fraction of the image)."""
    rows = []
    for s in split.test:
        if s.label == 1 and s.mask_path is not None:
            mask = s.load_mask()
            rows.append({"path": s.path.name, "defect": s.defect, "area": float(mask.mean()),
                         "pixels": int(mask.sum())})
    return pd.DataFrame(rows, columns=["path", "defect", "area", "pixels"])


def plot_defect_areas(areas: pd.DataFrame, title: str = ""):
    """Strip plot of defect areas (log scale) per defect type. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    defects = sorted(areas["defect"].unique())
    rng = np.random.default_rng(0)
    for i, defect in enumerate(defects):
        values = areas.loc[areas["defect"] == defect, "area"].to_numpy()
        ax.scatter(values * 100, i + rng.uniform(-0.15, 0.15, len(values)), s=14, alpha=0.7)
        ax.plot([np.median(values) * 100] * 2, [i - 0.3, i + 0.3], color="black")
    ax.set_xscale("log")
    ax.set_yticks(range(len(defects)), defects)
    ax.set_xlabel("defect area (% of the image, log scale; bar = median)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def intensity_samples(split: Split, max_images: int = 30, seed: int = 0) -> dict[str, np.ndarray]:
    """Gray-level pixel values of normal images, and of defective images (inside / outside masks).

    Returns:
        ``{"normal images": ..., "defect pixels": ..., "defect-free pixels of defective images": ...}``
        without masks: ``{"normal images": ..., "defective images": ...}``. At most 20,000 values each.
    """
    rng = np.random.default_rng(seed)
    normal = _pick(split.train or [s for s in split.test if s.label == 0], max_images, rng)
    defective = _pick([s for s in split.test if s.label == 1], max_images, rng)

    def gray(sample: Sample) -> np.ndarray:
        return sample.load_image().astype(np.float32).mean(axis=2)

    def cap(values: list[np.ndarray]) -> np.ndarray:
        flat = np.concatenate(values) if values else np.empty(0, np.float32)
        return flat if len(flat) <= 20000 else rng.choice(flat, 20000, replace=False)

    out = {"normal images": cap([gray(s).ravel() for s in normal])}
    if split.has_masks:
        inside, outside = [], []
        for s in defective:
            image = gray(s)
            mask = s.load_mask_or_empty(image.shape)
            inside.append(image[mask])
            outside.append(image[~mask])
        out["defect pixels"] = cap(inside)
        out["defect-free pixels of defective images"] = cap(outside)
    else:
        out["defective images"] = cap([gray(s).ravel() for s in defective])
    return out


def plot_intensity_histograms(values: dict[str, np.ndarray], title: str = ""):
    """Overlaid normalised gray-level histograms. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    bins = np.linspace(0, 255, 65)
    for name, v in values.items():
        if len(v):
            ax.hist(v, bins=bins, density=True, histtype="step", linewidth=1.5, label=f"{name} (n={len(v)})")
    ax.set_xlabel("gray level")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
