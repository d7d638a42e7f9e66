"""Classical baselines of notebook 05: a per-pixel variation model and PCA patch reconstruction.

They are trained here on the same data as the model notebooks' defaults (the synthetic
MVTec-like hazelnut/bottle/carpet and DAGM-like Class8 stand-ins, or one real dataset), scored
like the deep models (anomaly map -> image score = maximum of the smoothed map) and written as
ordinary results files (methods ``variation-model`` and ``patch-pca``, notebook ``05_comparison``),
so the comparison tables show what the deep models add.

The notebook calls::

    settings = settings_for(PROFILE, image_size=IMAGE_SIZE)
    targets = resolve_targets(DATA_ROOT, DATASET, CATEGORY, BASELINE_DATASETS)
    loaded = load_targets(targets, DATA_ROOT, settings, SEED)      # read + validate everything first
    runs = run_all(loaded, settings, profile=..., seed=SEED, results_dir=RESULTS_DIR)

Thresholds come from defect-free validation images held out of ``train/good``: the pixel
threshold is a quantile of the validation maps, the image threshold a quantile of the
validation image scores. The best-F1 thresholds on the test set are computed too, stored in the
results ``params`` under names starting with ``oracle_``, and never used for the headline F1.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from adlib import config, maps, metrics, results, thresholds
from adlib.baselines import PatchPCA, VariationModel
from adlib.data.torchdata import ImageDataset, holdout
from adlib.data.types import Split
from adlib.data.validate import validate_split

__all__ = [
    "NOTEBOOK", "METHODS", "SYNTHETIC_TARGETS", "PROFILES", "BaselineError", "BaselineData",
    "BaselineRun", "settings_for", "resolve_targets", "load_split", "load_targets", "prepare",
    "run_baseline", "run_all", "runs_table", "explorer",
]

NOTEBOOK = "05_comparison"
METHODS: tuple[str, ...] = ("variation-model", "patch-pca")
SYNTHETIC_TARGETS: tuple[tuple[str, str], ...] = (
    ("mvtec", "hazelnut"), ("mvtec", "bottle"), ("mvtec", "carpet"), ("dagm", "Class8"),
)
"""The model notebooks' default data: what the baselines train on when DATA_ROOT is None."""
LAYOUTS: tuple[str, ...] = ("mvtec", "dagm")

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "synthetic_size": "tiny", "image_size": 32, "val_fraction": 0.25, "patch": 4,
        "n_components": 6, "n_train_patches": 2_000, "map_sigma": 1.0,
        "pixel_quantile": 0.99, "image_quantile": 0.95, "max_test": 24,
    },
    "cpu": {
        "synthetic_size": "default", "image_size": 128, "val_fraction": 0.1, "patch": 8,
        "n_components": 16, "n_train_patches": 20_000, "map_sigma": 2.0,
        "pixel_quantile": 0.99, "image_quantile": 0.95, "max_test": None,
    },
    "paper": {
        "synthetic_size": "default", "image_size": 256, "val_fraction": 0.1, "patch": 8,
        "n_components": 24, "n_train_patches": 50_000, "map_sigma": 4.0,
        "pixel_quantile": 0.99, "image_quantile": 0.95, "max_test": None,
    },
}
"""Per-profile settings. ``image_size``: square size every image is resized to (the variation
model needs aligned pixels); ``patch``/``n_components``/``n_train_patches``: PatchPCA;
``map_sigma``: Gaussian smoothing of the maps; ``*_quantile``: validation thresholds;
``max_test``: cap on test images (smoke only; evenly spread over the sorted test list)."""


class BaselineError(ValueError):
    """A bad notebook parameter for the baselines (raised before any data is read)."""


# --------------------------------------------------------------------------- settings and data


def settings_for(profile: str, **overrides: Any) -> dict[str, Any]:
    """The profile's settings with non-``None`` overrides (keys of :data:`PROFILES`).

    Raises:
        BaselineError: unknown keys or an unusable image size.
    """
    unknown = sorted(set(overrides) - set(PROFILES["cpu"]))
    if unknown:
        raise BaselineError(f"Unknown baseline setting(s) {unknown}; known: {sorted(PROFILES['cpu'])}.")
    s = config.pick(profile, PROFILES, overrides)
    if int(s["image_size"]) < 2 * int(s["patch"]):
        raise BaselineError(f"IMAGE_SIZE={s['image_size']} is too small for {s['patch']}-pixel patches; "
                            f"use at least {2 * s['patch']}.")
    return s


def resolve_targets(
    data_root: str | Path | None,
    dataset: str,
    category: str | None,
    synthetic_targets: Sequence[Sequence[str]] | None = SYNTHETIC_TARGETS,
) -> list[tuple[str, str]]:
    """Which (dataset, category) pairs the baselines run on.

    With ``data_root`` None: every pair of ``synthetic_targets`` (the synthetic stand-ins).
    Otherwise: the one real ``(dataset, category)`` under ``data_root``.

    Raises:
        BaselineError: an unknown layout or a malformed target list.
    """
    if data_root is not None:
        pairs = [(dataset, category)]
    else:
        if synthetic_targets is None or isinstance(synthetic_targets, str):
            raise BaselineError("BASELINE_DATASETS must be a list of [dataset, category] pairs, "
                                "e.g. [['mvtec', 'hazelnut'], ['dagm', 'Class8']].")
        pairs = [tuple(p) for p in synthetic_targets]
    out: list[tuple[str, str]] = []
    for pair in pairs:
        if len(pair) != 2 or not all(isinstance(x, str) and x for x in pair):
            raise BaselineError(f"Baseline target {pair!r}: expected [dataset, category] strings.")
        if pair[0] not in LAYOUTS:
            raise BaselineError(f"Baseline target {pair!r}: dataset must be one of {LAYOUTS} "
                                "(the layouts whose images can be aligned pixel by pixel).")
        out.append((pair[0], pair[1]))
    return list(dict.fromkeys(out))


def load_split(dataset: str, category: str, data_root: str | Path | None, settings: dict[str, Any],
               seed: int = 0) -> tuple[Split, bool]:
    """Read and validate one dataset; ``data_root`` None means its synthetic stand-in.

    Returns:
        ``(split, synthetic)``.

    Raises:
        DataError: missing or malformed data (names the path and the fix).
    """
    synthetic = data_root is None
    if synthetic:
        from adlib.data.synthetic import ensure_synthetic

        root = ensure_synthetic(dataset, category, size=settings["synthetic_size"], seed=seed, progress=False)
    else:
        root = Path(data_root).expanduser()
    if dataset == "mvtec":
        from adlib.data.mvtec import read_mvtec

        split = read_mvtec(root, category)
    else:
        from adlib.data.dagm import read_dagm

        split = read_dagm(root, category, progress=False)
    validate_split(split, check_images=True, progress=False)
    return split, synthetic


def load_targets(targets: Sequence[tuple[str, str]], data_root: str | Path | None,
                 settings: dict[str, Any], seed: int = 0) -> list[tuple[Split, bool]]:
    """:func:`load_split` for every target, so bad input fails before anything is fitted."""
    return [load_split(d, c, data_root, settings, seed) for d, c in targets]


@dataclass
class BaselineData:
    """One dataset as float arrays in [0, 1], ``(N, H, W, C)``, resized to ``image_size``."""

    split: Split
    synthetic: bool
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    test_masks: np.ndarray | None
    labels: np.ndarray
    defects: list[str]
    paths: list[str]


def _arrays(ds: ImageDataset, masks: bool) -> tuple[np.ndarray, np.ndarray | None]:
    items = [ds[i] for i in range(len(ds))]
    images = torch.stack([it["image"] for it in items]).permute(0, 2, 3, 1).numpy().astype(np.float32)
    m = torch.stack([it["mask"][0] for it in items]).numpy() > 0.5 if masks else None
    return images, m


def _spread(samples: list, n: int | None) -> list:
    if n is None or len(samples) <= n:
        return samples
    idx = np.linspace(0, len(samples) - 1, n).round().astype(int)
    return [samples[i] for i in np.unique(idx)]


def prepare(split: Split, synthetic: bool, settings: dict[str, Any], seed: int = 0) -> BaselineData:
    """Hold out defect-free validation images and decode train/validation/test once."""
    train_s, val_s = holdout(split.train, settings["val_fraction"], seed)
    if not val_s:
        raise BaselineError(f"{split.root}: no validation images could be held out of train "
                            f"({len(split.train)} defect-free images); add defect-free images.")
    test_s = _spread(sorted(split.test, key=lambda s: str(s.path)), settings["max_test"])
    kw = {"image_size": settings["image_size"], "channels": split.channels, "progress": False}
    train, _ = _arrays(ImageDataset(train_s, **kw), False)
    val, _ = _arrays(ImageDataset(val_s, **kw), False)
    test, masks = _arrays(ImageDataset(test_s, with_masks=split.has_masks, **kw), split.has_masks)
    return BaselineData(split, synthetic, train, val, test, masks,
                        np.array([s.label for s in test_s], dtype=int),
                        [s.defect for s in test_s], [str(s.path) for s in test_s])


# --------------------------------------------------------------------------- fitting and scoring


@dataclass
class BaselineRun:
    """One baseline on one dataset: maps, scores, thresholds, metrics and the results file."""

    method: str
    data: BaselineData
    maps: np.ndarray
    scores: np.ndarray
    pixel_threshold: thresholds.Threshold
    image_threshold: thresholds.Threshold
    metrics: dict[str, Any]
    extra: dict[str, Any]
    """Image-level F1 at the validation threshold and the ``oracle_*`` numbers (also in params)."""
    train_seconds: float
    results_path: Path

    @property
    def name(self) -> str:
        """``method on dataset/category``."""
        return f"{self.method} on {self.data.split.dataset}/{self.data.split.category}"


def _model(method: str, settings: dict[str, Any], seed: int) -> VariationModel | PatchPCA:
    if method == "variation-model":
        return VariationModel()
    if method == "patch-pca":
        return PatchPCA(patch=settings["patch"], n_components=settings["n_components"],
                        n_train_patches=settings["n_train_patches"], seed=seed)
    raise BaselineError(f"Unknown baseline {method!r}; expected one of {METHODS}.")


def _maps(model: VariationModel | PatchPCA, images: np.ndarray, sigma: float) -> np.ndarray:
    raw = model.score_maps(images)
    return maps.gaussian_smooth(raw, sigma) if sigma > 0 else raw


def _oracles(run_maps: np.ndarray, scores: np.ndarray, data: BaselineData) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if data.labels.min() != data.labels.max():
        o_img = thresholds.oracle_best_f1_threshold(scores, data.labels)
        out["oracle_image_threshold"] = o_img.value
        out["oracle_image_f1"] = metrics.image_prf(scores, data.labels, o_img.value).f1
    if data.test_masks is not None and data.test_masks.any():
        o_pix = thresholds.oracle_best_f1_threshold(run_maps, data.test_masks)
        out["oracle_pixel_threshold"] = o_pix.value
        out["oracle_pixel_f1"] = metrics.pixel_prf(run_maps, data.test_masks, o_pix.value).f1
    return out


def run_baseline(method: str, data: BaselineData, settings: dict[str, Any], *, profile: str,
                 seed: int = 0, results_dir: str | Path = "results") -> BaselineRun:
    """Fit one baseline on the training images, score validation and test, write the results."""
    start = time.perf_counter()
    model = _model(method, settings, seed).fit(data.train)
    train_seconds = time.perf_counter() - start
    sigma = float(settings["map_sigma"])
    val_maps, test_maps = _maps(model, data.val, sigma), _maps(model, data.test, sigma)
    val_scores, scores = maps.image_scores(val_maps), maps.image_scores(test_maps)
    pix_thr = thresholds.threshold_from_normal(val_maps, method="quantile", q=settings["pixel_quantile"])
    img_thr = thresholds.threshold_from_normal(val_scores, method="quantile", q=settings["image_quantile"])
    summary = results.metrics_summary(scores=scores, labels=data.labels, maps=test_maps,
                                      masks=data.test_masks, threshold=pix_thr, defects=data.defects)
    img_prf = metrics.image_prf(scores, data.labels, img_thr.value)
    extra = {"image_threshold": img_thr.value, "image_threshold_source": img_thr.source,
             "image_f1": img_prf.f1, "image_precision": img_prf.precision, "image_recall": img_prf.recall,
             **_oracles(test_maps, scores, data)}
    split = data.split
    params = {k: settings[k] for k in ("image_size", "map_sigma", "pixel_quantile", "image_quantile",
                                         "val_fraction")}
    if method == "patch-pca":
        params.update({k: settings[k] for k in ("patch", "n_components", "n_train_patches")})
    params.update({"score": "max of the smoothed anomaly map", "n_train": len(data.train),
                   "n_val": len(data.val), "n_test": len(data.test), **extra})
    has_pixel = summary["pixel_f1"] is not None
    frame = pd.DataFrame({"path": data.paths, "label": data.labels, "defect": data.defects,
                          "score": scores})
    path = results.save_results(
        results_dir, notebook=NOTEBOOK, method=method, dataset=split.dataset, category=split.category,
        synthetic=data.synthetic, profile=config.resolve_profile(profile), seed=seed, metrics=summary,
        scores=frame, threshold=pix_thr if has_pixel else None, train_seconds=train_seconds,
        params=params)
    return BaselineRun(method, data, test_maps, scores, pix_thr, img_thr, summary, extra,
                       train_seconds, path)


def run_all(loaded: Sequence[tuple[Split, bool]], settings: dict[str, Any], *, profile: str,
            seed: int = 0, results_dir: str | Path = "results",
            methods: Sequence[str] = METHODS) -> list[BaselineRun]:
    """Every baseline on every loaded dataset (see :func:`load_targets`)."""
    from tqdm.auto import tqdm

    runs: list[BaselineRun] = []
    for split, synthetic in tqdm(list(loaded), desc="baselines", unit="dataset"):
        data = prepare(split, synthetic, settings, seed)
        for method in methods:
            runs.append(run_baseline(method, data, settings, profile=profile, seed=seed,
                                     results_dir=results_dir))
    return runs


def runs_table(runs: Sequence[BaselineRun], decimals: int = 3) -> pd.DataFrame:
    """One row per baseline run: the headline metrics and the honest/oracle image F1."""
    rows = []
    for r in runs:
        s = r.data.split
        rows.append({
            "dataset": s.dataset, "category": s.category,
            "data": "synthetic stand-in" if r.data.synthetic else "real", "method": r.method,
            **{k: r.metrics[k] for k in ("image_auroc", "pixel_auroc", "aupro", "pixel_f1")},
            "image_f1 (validation thr.)": r.extra["image_f1"],
            "ORACLE image_f1 (test)": r.extra.get("oracle_image_f1"),
            "fit seconds": r.train_seconds,
        })
    df = pd.DataFrame(rows)
    num = df.select_dtypes("number").columns
    df[num] = df[num].astype(float).round(decimals)
    return df


def explorer(runs: Sequence[BaselineRun], choice: Sequence[str] | None = None, *,
             static: bool | None = None, max_images: int = 4):
    """Threshold explorer (:func:`adlib.explorer.threshold_explorer`) over the baselines' maps.

    Interactive: a dropdown picks dataset and method, the slider the threshold (starting at the
    validation threshold); masks and pixel F1 update. Headless: the static figure of one run.

    Args:
        runs: from :func:`run_all`.
        choice: ``[dataset, category, method]`` to show first (default: the first run).
        static: force static (True) or widget (False); None decides automatically.
        max_images: test images shown (defective first).
    """
    from adlib.explorer import interactive_frontend, threshold_explorer

    if not runs:
        return None
    by_name = {r.name: r for r in runs}
    first = runs[0]
    if choice is not None:
        wanted = [r for r in runs if [r.data.split.dataset, r.data.split.category, r.method] == list(choice)]
        if not wanted:
            raise BaselineError(f"EXPLORE={list(choice)!r} matches no baseline run; available: "
                                f"{[[r.data.split.dataset, r.data.split.category, r.method] for r in runs]}.")
        first = wanted[0]

    def one(run: BaselineRun, as_static: bool | None):
        return threshold_explorer(run.data.test, run.maps, run.data.test_masks,
                                  initial=run.pixel_threshold.value, max_images=max_images, static=as_static)

    use_widget = (not static) if static is not None else interactive_frontend()
    if not use_widget:
        fig = one(first, True)
        fig.suptitle(f"{first.name}: predicted masks at a few thresholds "
                     f"(validation threshold {first.pixel_threshold.value:.3g} among them)", fontsize=10)
        return fig

    import ipywidgets as widgets
    from IPython.display import display

    pick = widgets.Dropdown(options=list(by_name), value=first.name, description="baseline",
                            layout=widgets.Layout(width="60%"))
    out = widgets.Output()

    def show(change: Any = None) -> None:
        with out:
            out.clear_output(wait=True)
            display(one(by_name[pick.value], False))

    pick.observe(show, names="value")
    show()
    return widgets.VBox([pick, out])
