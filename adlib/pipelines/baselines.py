"""Classical baselines of notebook 05: a per-pixel variation model and PCA patch reconstruction.

They are trained here on the same data as the model notebooks' defaults (the synthetic
MVTec-like hazelnut/bottle/carpet and DAGM-like Class8 stand-ins, or one real dataset), scored
like the deep models (anomaly map -> image score = maximum of the smoothed map) and written as
ordinary results files (methods ``variation-model`` and ``patch-pca``, notebook ``05_comparison``),
so the comparison tables show what the deep models add.

The notebook calls (the same protocol as the model notebooks, :mod:`adlib.experiment`)::

    cfg = settings(PROFILE, {"image_size": IMAGE_SIZE, "targets": BASELINE_DATASETS})
    targets = resolve_targets(DATA_ROOT, DATASET, CATEGORY, cfg["targets"])
    run = experiment.run_id(SEED, cfg, exclude=SELECTION, data_root=DATA_ROOT)
    loaded = load_targets(targets, DATA_ROOT, cfg)      # read + validate everything first
    runs = run_all(loaded, cfg, profile=..., seed=SEED, run=run, results_dir=RESULTS_DIR)

Thresholds come from defect-free validation images held out of ``train/good``: the pixel
threshold is a quantile of the validation maps, the image threshold a quantile of the
validation image scores. The best-F1 thresholds on the test set are computed too, stored in the
results ``params`` under names starting with ``oracle_``, and never used for the headline F1.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from adlib import config, experiment, maps, metrics, thresholds
from adlib.baselines import PatchPCA, VariationModel
from adlib.config import SettingsError
from adlib.data.torchdata import ImageDataset
from adlib.data.types import Split

__all__ = [
    "NOTEBOOK", "METHODS", "SYNTHETIC_TARGETS", "PROFILES", "PARAMETERS", "BaselineData",
    "BaselineRun", "settings", "resolve_targets", "load_split", "load_targets", "prepare",
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
        "targets": [list(t) for t in SYNTHETIC_TARGETS],
    },
    "cpu": {
        "synthetic_size": "default", "image_size": 128, "val_fraction": 0.1, "patch": 8,
        "n_components": 16, "n_train_patches": 20_000, "map_sigma": 2.0,
        "pixel_quantile": 0.99, "image_quantile": 0.95, "max_test": None,
        "targets": [list(t) for t in SYNTHETIC_TARGETS],
    },
    "paper": {
        "synthetic_size": "default", "image_size": 256, "val_fraction": 0.1, "patch": 8,
        "n_components": 24, "n_train_patches": 50_000, "map_sigma": 4.0,
        "pixel_quantile": 0.99, "image_quantile": 0.95, "max_test": None,
        "targets": [list(t) for t in SYNTHETIC_TARGETS],
    },
}
"""Per-profile settings. ``image_size``: square size every image is resized to (the variation
model needs aligned pixels); ``patch``/``n_components``/``n_train_patches``: PatchPCA;
``map_sigma``: Gaussian smoothing of the maps; ``*_quantile``: validation thresholds;
``max_test``: cap on test images (smoke only; evenly spread over the sorted test list);
``targets``: the [dataset, category] pairs of the synthetic stand-ins (with DATA_ROOT None)."""
SELECTION: tuple[str, ...] = ("targets",)  # only picks what runs: not in the run id
PARAMETERS: dict[str, str] = {"image_size": "IMAGE_SIZE", "targets": "BASELINE_DATASETS"}
"""Setting key -> notebook parameter name (for the messages of :func:`settings`)."""


# --------------------------------------------------------------------------- settings and data


def _check(cfg: dict[str, Any]) -> None:
    if int(cfg["image_size"]) < 2 * int(cfg["patch"]):
        raise SettingsError(f"IMAGE_SIZE={cfg['image_size']} is too small for {cfg['patch']}-pixel patches; "
                            f"use at least {2 * cfg['patch']}.")


def settings(profile: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The profile's settings with non-``None`` overrides (keys of :data:`PROFILES`), strictly checked.

    Raises:
        SettingsError: unknown keys, wrong types or an unusable image size.
    """
    return config.settings(profile, PROFILES, overrides, names=PARAMETERS, check=_check)


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
        SettingsError: an unknown layout or a malformed target list.
    """
    if data_root is not None:
        pairs = [(dataset, category)]
    else:
        if synthetic_targets is None or isinstance(synthetic_targets, str):
            raise SettingsError("BASELINE_DATASETS must be a list of [dataset, category] pairs, "
                                "e.g. [['mvtec', 'hazelnut'], ['dagm', 'Class8']].")
        pairs = [tuple(p) for p in synthetic_targets]
    out: list[tuple[str, str]] = []
    for pair in pairs:
        if len(pair) != 2 or not all(isinstance(x, str) and x for x in pair):
            raise SettingsError(f"Baseline target {pair!r}: expected [dataset, category] strings.")
        if pair[0] not in LAYOUTS:
            raise SettingsError(f"Baseline target {pair!r}: dataset must be one of {LAYOUTS} "
                                "(the layouts whose images can be aligned pixel by pixel).")
        out.append((pair[0], pair[1]))
    return list(dict.fromkeys(out))


def load_split(dataset: str, category: str, data_root: str | Path | None,
               cfg: dict[str, Any]) -> tuple[Split, bool]:
    """Read and validate one dataset (:func:`adlib.experiment.load_split`); ``data_root`` None
    means its synthetic stand-in.

    Returns:
        ``(split, synthetic)``.

    Raises:
        DataError: missing or malformed data (names the path and the fix).
    """
    loaded = experiment.load_split(dataset, data_root, category, synthetic_size=cfg["synthetic_size"],
                                   keep_arrays=False, progress=False)
    return loaded.split, loaded.synthetic


def load_targets(targets: Sequence[tuple[str, str]], data_root: str | Path | None,
                 cfg: dict[str, Any]) -> list[tuple[Split, bool]]:
    """:func:`load_split` for every target, so bad input fails before anything is fitted."""
    return [load_split(d, c, data_root, cfg) for d, c in targets]


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


def prepare(split: Split, synthetic: bool, cfg: dict[str, Any], seed: int = 0) -> BaselineData:
    """Hold out defect-free validation images and decode train/validation/test once."""
    train_s, val_s = experiment.hold_out(split.train, cfg["val_fraction"], seed,
                                         where=f"{split.root} ({split.category})", min_train=1)
    test_s = _spread(sorted(split.test, key=lambda s: str(s.path)), cfg["max_test"])
    kw = {"image_size": cfg["image_size"], "channels": split.channels, "progress": False}
    train, _ = _arrays(ImageDataset(train_s, **kw), False)
    val, _ = _arrays(ImageDataset(val_s, **kw), False)
    test, masks = _arrays(ImageDataset(test_s, with_masks=split.has_masks, **kw), split.has_masks)
    return BaselineData(split, synthetic, train, val, test, masks,
                        np.array([s.label for s in test_s], dtype=int),
                        [s.defect for s in test_s], [str(s.path) for s in test_s])


# --------------------------------------------------------------------------- fitting and scoring


@dataclass
class BaselineRun:
    """One baseline on one dataset: its evaluation (maps, scores, thresholds, metrics) and file."""

    method: str
    data: BaselineData
    evaluation: experiment.Evaluation
    train_seconds: float
    results_path: Path

    @property
    def name(self) -> str:
        """``method on dataset/category``."""
        return f"{self.method} on {self.data.split.dataset}/{self.data.split.category}"

    @property
    def maps(self) -> np.ndarray:
        """The smoothed test anomaly maps."""
        return self.evaluation.maps

    @property
    def metrics(self) -> dict[str, Any]:
        """The GUIDE metrics."""
        return self.evaluation.metrics

    @property
    def pixel_threshold(self) -> thresholds.Threshold:
        """The validation pixel threshold (quantile of the defect-free validation maps)."""
        return self.evaluation.pixel_thresholds["quantile"]


def _model(method: str, cfg: dict[str, Any], seed: int) -> VariationModel | PatchPCA:
    if method == "variation-model":
        return VariationModel()
    if method == "patch-pca":
        return PatchPCA(patch=cfg["patch"], n_components=cfg["n_components"],
                        n_train_patches=cfg["n_train_patches"], seed=seed)
    raise SettingsError(f"Unknown baseline {method!r}; expected one of {METHODS}.")


def _maps(model: VariationModel | PatchPCA, images: np.ndarray, sigma: float) -> np.ndarray:
    raw = model.score_maps(images)
    return maps.gaussian_smooth(raw, sigma) if sigma > 0 else raw


def run_baseline(method: str, data: BaselineData, cfg: dict[str, Any], *, profile: str,
                 seed: int = 0, run: str, results_dir: str | Path = "results") -> BaselineRun:
    """Fit one baseline on the training images, score validation and test, write the results."""
    start = time.perf_counter()
    model = _model(method, cfg, seed).fit(data.train)
    train_seconds = time.perf_counter() - start
    sigma = float(cfg["map_sigma"])
    val_maps, test_maps = _maps(model, data.val, sigma), _maps(model, data.test, sigma)
    pix_thr = thresholds.threshold_from_normal(val_maps, method="quantile", q=cfg["pixel_quantile"])
    ev = experiment.evaluate(
        method, scores=maps.image_scores(test_maps), labels=data.labels, defects=data.defects,
        paths=data.paths, val_scores=maps.image_scores(val_maps), image_q=cfg["image_quantile"],
        maps=test_maps, masks=data.test_masks, val_maps=val_maps, pixel_thresholds={"quantile": pix_thr})
    img_prf = metrics.image_prf(ev.scores, ev.labels, ev.image_threshold.value)
    params = {k: cfg[k] for k in ("image_size", "map_sigma", "pixel_quantile", "image_quantile", "val_fraction")}
    if method == "patch-pca":
        params.update({k: cfg[k] for k in ("patch", "n_components", "n_train_patches")})
    params.update({"score": "max of the smoothed anomaly map", "n_train": len(data.train),
                   "n_val": len(data.val), "n_test": len(data.test),
                   "image_precision": img_prf.precision, "image_recall": img_prf.recall})
    path = experiment.save(ev, results_dir=results_dir, notebook=NOTEBOOK, split=data.split,
                           synthetic=data.synthetic, profile=config.resolve_profile(profile), seed=seed,
                           run=run, train_seconds=train_seconds, params=params)
    return BaselineRun(method, data, ev, train_seconds, path)


def run_all(loaded: Sequence[tuple[Split, bool]], cfg: dict[str, Any], *, profile: str,
            seed: int = 0, run: str, results_dir: str | Path = "results",
            methods: Sequence[str] = METHODS) -> list[BaselineRun]:
    """Every baseline on every loaded dataset (see :func:`load_targets`)."""
    from tqdm.auto import tqdm

    runs: list[BaselineRun] = []
    for split, synthetic in tqdm(list(loaded), desc="baselines", unit="dataset"):
        data = prepare(split, synthetic, cfg, seed)
        for method in methods:
            runs.append(run_baseline(method, data, cfg, profile=profile, seed=seed, run=run,
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
            "image_f1 (validation thr.)": r.evaluation.image_f1,
            "ORACLE image_f1 (test)": r.evaluation.oracle_image_f1,
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
            raise SettingsError(f"EXPLORE={list(choice)!r} matches no baseline run; available: "
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
