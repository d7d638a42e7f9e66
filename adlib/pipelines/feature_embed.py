"""Notebook 06 pipeline: pretrained-feature methods, PatchCore and PaDiM, on any of the four layouts.

No network is trained: a frozen ImageNet backbone (:mod:`adlib.features.backbones`) describes
every image position, and "fitting" stores the defect-free descriptions (PatchCore: a coreset of
the memory bank; PaDiM: one Gaussian per position). The notebook calls the protocol's verbs::

    cfg = feature_embed.settings(PROFILE, {"image_size": IMAGE_SIZE, "backbone": BACKBONE, ...})
    data = feature_embed.load(cfg, dataset=DATASET, data_root=DATA_ROOT, category=CATEGORY, seed=SEED)
    fitted = feature_embed.train(data, cfg, "patchcore", results_dir=RESULTS_DIR, run=run)
    evals = feature_embed.evaluate(fitted, data, cfg)        # maps, honest thresholds, metrics
    paths = feature_embed.save(evals, fitted, data, cfg, results_dir=RESULTS_DIR, ...)

"Training" follows the protocol's checkpoint rule: the fitted bank (or Gaussians) is written
atomically to ``<RESULTS_DIR>/06_feature_embeddings/checkpoints/<variant>-<run>.pt`` and reused
when present (``train_seconds`` is the stored fit time). Studies, figures and the cost table
are in :mod:`adlib.pipelines.feature_views`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adlib import config, experiment, threshold_rules
from adlib.checkpoints import save_checkpoint
from adlib.config import SettingsError
from adlib.data.torchdata import ImageDataset
from adlib.data.types import Split
from adlib.features.backbones import BACKBONES, LAYERS, FeatureExtractor
from adlib.features.embed import embed_images, to_image_maps
from adlib.models.padim import Padim, random_channels
from adlib.models.patchcore import PatchCore, per_image_limit, sample_positions

NOTEBOOK = "06_feature_embeddings"
VARIANTS: tuple[str, ...] = ("patchcore", "padim")
DATASETS: tuple[str, ...] = ("mvtec", "dagm", "rsdd", "sem")
SHORT: dict[str, str] = {"efficientnet_lite0": "", "wide_resnet50_2": "-wrn50"}
"""Method-name suffix per backbone: ``patchcore`` (the default backbone), ``patchcore-wrn50``."""
FORMAT = "adlib-feature-fit-v1"
PIXEL_RULE = "image_max"
"""The results' pixel rule (:mod:`adlib.threshold_rules`): the ``image_threshold_q`` quantile of
the validation maps' maxima. Both methods' image score is the map's maximum, so a lower pixel
threshold would mark defect pixels in images the run calls defect-free; every other rule (at the
rate ``1 - pixel_threshold_q``) and the ``auto`` pick are recorded beside it. The measurements
behind this choice (auto vs image_max, real DAGM dev kit and stand-ins) are in
:mod:`adlib.threshold_rules`' docstring."""

_COMMON: dict[str, Any] = {
    "backbone": "efficientnet_lite0", "patchcore_layers": None, "padim_layers": None,
    "neighbourhood": 3, "proj_dim": 64, "reweight": False, "neighbours": 3, "padim_channels": 100,
    "padim_eps": 0.01, "image_threshold_q": 0.95, "pixel_threshold_q": 0.999, "batch_size": 8,
    "border_pad": 32,
}
SYNTHETIC_TARGETS: list[list[str]] = [
    ["mvtec", "hazelnut"], ["mvtec", "bottle"], ["mvtec", "carpet"], ["dagm", "Class8"], ["rsdd", "type-I"],
    ["sem", "nanofibres"],
]
"""Every dataset family's stand-in (the other notebooks' defaults), run by section 10 with DATA_ROOT None."""
_SIZES = {"mvtec": 224, "dagm": 512, "rsdd": 160, "sem": 256}
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {**_COMMON, "image_size": None, "sizes": {k: 64 for k in _SIZES}, "coreset_ratio": 0.1, "border_pad": 8,
              "bank_limit": 20_000, "map_sigma": 1.0, "val_fraction": 0.25, "synthetic_size": "tiny",
              "coreset_study": [0.01, 0.1, 0.5], "targets": SYNTHETIC_TARGETS},
    "cpu": {**_COMMON, "image_size": None, "sizes": dict(_SIZES), "coreset_ratio": 0.01,
            "bank_limit": 200_000, "map_sigma": 4.0, "val_fraction": 0.1, "synthetic_size": "default",
            "coreset_study": [0.001, 0.005, 0.01, 0.05, 0.1], "targets": SYNTHETIC_TARGETS},
    "paper": {**_COMMON, "backbone": "wide_resnet50_2", "image_size": None, "sizes": dict(_SIZES),
              "coreset_ratio": 0.1, "bank_limit": None, "proj_dim": 128, "map_sigma": 4.0,
              "val_fraction": 0.1, "synthetic_size": "default", "reweight": True,
              "coreset_study": [0.001, 0.01, 0.1, 0.25], "targets": SYNTHETIC_TARGETS},
}
"""Per-profile settings. ``image_size``: square working size (None: ``sizes[dataset]``, or the
images' own shorter side when that is smaller: 224 px
for MVTec as in both papers, DAGM at its native 512 px because its scratches are a few pixels
wide, RSDDs as 160 x 160 patches of its 160 px wide strips, as notebook 02 cuts them); ``*_layers``: backbone stages (None: the backbone's defaults,
:data:`adlib.features.backbones.LAYERS`);
``neighbourhood``: PatchCore's local averaging window; ``coreset_ratio``: share of the (at most
``bank_limit``) training patches kept; ``proj_dim``: projection for the coreset selection only;
``padim_channels``: PaDiM's random channel subset; ``map_sigma``: Gaussian smoothing of the
maps in pixels; ``*_threshold_q``: quantiles of the defect-free validation scores / maps;
``border_pad``: pixels of mirrored image around each image before the backbone (cropped from the
features after it), so that border patches are not made of the network's zero padding."""
SELECTION: tuple[str, ...] = ("coreset_study", "targets")  # only pick what runs: not in the run id
PARAMETERS: dict[str, str] = {
    "image_size": "IMAGE_SIZE", "backbone": "BACKBONE", "coreset_ratio": "CORESET_RATIO",
    "coreset_study": "CORESET_STUDY", "patchcore_layers": "PATCHCORE_LAYERS", "reweight": "REWEIGHT",
    "targets": "TARGETS",
}


# --------------------------------------------------------------------------- settings


def _check(cfg: dict[str, Any]) -> None:
    name = {**{k: k.upper() for k in cfg}, **PARAMETERS}
    if cfg["backbone"] not in BACKBONES:
        raise SettingsError(f"BACKBONE={cfg['backbone']!r}: expected one of {BACKBONES}.")
    limit = 7 if cfg["backbone"] == "efficientnet_lite0" else 4
    for key in ("patchcore_layers", "padim_layers"):
        chosen = cfg[key]
        if chosen is None:
            continue
        if (not isinstance(chosen, (list, tuple)) or not chosen
                or any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= limit for v in chosen)):
            raise SettingsError(f"{name[key]}={chosen!r}: a list of {cfg['backbone']} stages in 1..{limit}, "
                                "e.g. [2, 3]; None for the backbone's default.")
    for t in cfg["targets"]:
        if (not isinstance(t, (list, tuple)) or len(t) != 2 or t[0] not in DATASETS
                or not (t[1] is None or isinstance(t[1], str))):
            raise SettingsError(f"TARGETS: {t!r} is not a [dataset, category] pair with a dataset of {DATASETS}.")
    if not isinstance(cfg["reweight"], bool):
        raise SettingsError(f"REWEIGHT={cfg['reweight']!r} must be True or False.")
    for key in ("coreset_ratio", "coreset_study"):
        values = cfg[key] if isinstance(cfg[key], list) else [cfg[key]]
        if any(not 0 < float(v) <= 1 for v in values):
            raise SettingsError(f"{name[key]}={cfg[key]!r}: coreset ratios lie in (0, 1].")
    for key in ("image_threshold_q", "pixel_threshold_q"):
        if not 0 < cfg[key] < 1:
            raise SettingsError(f"{name[key]}={cfg[key]!r}: a quantile strictly between 0 and 1.")
    if cfg["image_size"] is not None and (isinstance(cfg["image_size"], bool) or
                                          not isinstance(cfg["image_size"], int) or cfg["image_size"] < 32):
        raise SettingsError(f"IMAGE_SIZE={cfg['image_size']!r}: None or an integer >= 32.")
    if set(cfg["sizes"]) != set(_SIZES):
        raise SettingsError(f"SIZES={cfg['sizes']!r}: one working size per dataset {sorted(_SIZES)}.")
    if cfg["map_sigma"] < 0 or cfg["padim_eps"] <= 0 or cfg["neighbourhood"] < 1 or cfg["border_pad"] < 0:
        raise SettingsError("MAP_SIGMA >= 0, PADIM_EPS > 0, NEIGHBOURHOOD >= 1 and BORDER_PAD >= 0 are needed.")


def settings(profile: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The profile's settings with the notebook's overrides, strictly checked.

    Raises:
        SettingsError: naming the notebook parameter and the fix.
    """
    return config.settings(profile, PROFILES, overrides, names=PARAMETERS, check=_check)


def working_size(cfg: Mapping[str, Any], dataset: str, native: int | None = None) -> int:
    """The square size images are resized to: ``IMAGE_SIZE``, else the profile's size for the
    dataset, but never larger than the images' own shorter side ``native`` (no upsampling)."""
    if cfg["image_size"]:
        return int(cfg["image_size"])
    size = int(cfg["sizes"][dataset])
    return min(size, int(native)) if native else size


def layers(cfg: Mapping[str, Any], variant: str) -> tuple[int, ...]:
    """The backbone stages ``variant`` uses: the setting, else the backbone's default."""
    chosen = cfg[f"{variant}_layers"]
    return tuple(int(v) for v in chosen) if chosen is not None else LAYERS[cfg["backbone"]][variant]


def method_name(variant: str, cfg: Mapping[str, Any]) -> str:
    """Results' method name: ``patchcore`` / ``padim``, with a suffix for another backbone."""
    if variant not in VARIANTS:
        raise SettingsError(f"Unknown variant {variant!r}: expected one of {VARIANTS}.")
    return variant + SHORT[cfg["backbone"]]


# --------------------------------------------------------------------------- data


@dataclass
class Data:
    """One dataset as tensors in [0, 1], ``(N, C, S, S)``, resized to the working size ``S``."""

    split: Split
    synthetic: bool
    size: int
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    test_masks: np.ndarray | None
    labels: np.ndarray
    defects: list[str]
    paths: list[str]
    train_paths: list[str] = field(default_factory=list)


def _tensors(samples: Sequence, split: Split, size: int, report: Any, masks: bool = False):
    ds = ImageDataset(list(samples), image_size=size, channels=split.channels, progress=False,
                      with_masks=masks, decoded=report)
    items = [ds[i] for i in range(len(ds))]
    x = torch.stack([it["image"] for it in items])
    m = torch.stack([it["mask"][0] for it in items]).numpy() > 0.5 if masks else None
    return x, m


def load(cfg: dict[str, Any], *, dataset: str = "mvtec", data_root: str | Path | None = None,
         category: str | None = "bottle", seed: int = 0, progress: bool = True) -> Data:
    """Read and validate one dataset, hold out defect-free validation images, decode everything once.

    Raises:
        DataError: missing or malformed data, too few training images (names the path and the fix).
    """
    if dataset not in DATASETS:
        raise SettingsError(f"DATASET={dataset!r}: expected one of {DATASETS}.")
    if dataset == "rsdd":
        return _load_rsdd(cfg, data_root, seed, progress)
    cat = category if dataset in ("mvtec", "dagm") else None
    if dataset == "dagm" and cat == "bottle":
        cat = "Class8"
    loaded = experiment.load_split(dataset, data_root, cat, synthetic_size=cfg["synthetic_size"],
                                   keep_arrays=True, progress=progress)
    split = loaded.split
    train_s, val_s = experiment.hold_out(split.train, cfg["val_fraction"], seed, min_train=1,
                                         where=f"{split.root} ({split.category})")
    sides = [min(hw) for hw in loaded.report.sizes] if loaded.report.sizes else []
    size = working_size(cfg, dataset, min(sides) if sides else None)
    train, _ = _tensors(train_s, split, size, loaded.report)
    val, _ = _tensors(val_s, split, size, loaded.report)
    test, masks = _tensors(split.test, split, size, loaded.report, masks=split.has_masks)
    return Data(split, loaded.synthetic, size, train, val, test, masks,
                np.array([s.label for s in split.test], dtype=int), [s.defect for s in split.test],
                [str(s.path) for s in split.test], [str(s.path) for s in train_s])


def _load_rsdd(cfg: dict[str, Any], data_root: Any, seed: int, progress: bool) -> Data:
    """RSDDs holds no defect-free strips: notebook 02's patch protocol (square patches of the
    working size; defect-free patches of training strips, validation from held-out strips)."""
    from adlib.pipelines.unet_dagm_rsdd import load_rsdd_patches as patches

    size = working_size(cfg, "rsdd")
    d = patches({"synthetic_size": cfg["synthetic_size"], "rsdd_patch": (size, size), "rsdd_stride": None,
                 "val_fraction": cfg["val_fraction"], "max_train": None}, data_root, seed, progress)
    f = lambda t: t.float() / 255.0  # noqa: E731 - uint8 patches -> [0, 1]
    return Data(d.split, d.synthetic, size, f(d.train), f(d.val), f(d.test), d.test_masks,
                np.asarray(d.test_labels, dtype=int), list(d.test_defects), list(d.test_paths))


# --------------------------------------------------------------------------- fit ("train")


@dataclass
class FeatureSpec:
    """What fitting one variant needs: the frozen extractor and how embeddings are made."""

    variant: str
    extractor: FeatureExtractor
    neighbourhood: int
    channels: list[int] | None


_EXTRACTORS: dict[tuple[str, tuple[int, ...], int], FeatureExtractor] = {}


def extractor(backbone: str, layers: Sequence[int], pad: int = 0) -> FeatureExtractor:
    """The frozen feature extractor (loaded once per process, weights hash-checked)."""
    key = (backbone, tuple(int(v) for v in layers), int(pad))
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = FeatureExtractor(backbone, key[1], pad=key[2])
    return _EXTRACTORS[key]


def spec(data: Data, cfg: dict[str, Any], variant: str) -> FeatureSpec:
    """The fitting spec of ``variant`` (PaDiM's random channel subset is seeded by the settings)."""
    method_name(variant, cfg)
    if variant == "patchcore":
        return FeatureSpec(variant, extractor(cfg["backbone"], layers(cfg, variant), cfg["border_pad"]),
                           cfg["neighbourhood"], None)
    fe = extractor(cfg["backbone"], layers(cfg, variant), cfg["border_pad"])
    total = sum(f.shape[1] for f in fe(data.train[:1]))
    return FeatureSpec(variant, fe, 1, random_channels(total, cfg["padim_channels"], seed=0))


def embed(sp: FeatureSpec, images: torch.Tensor, cfg: Mapping[str, Any], device: str = "cpu") -> torch.Tensor:
    """Embeddings ``(N, D, h, w)`` of ``images`` for ``sp``."""
    sp.extractor.to(device)
    return embed_images(sp.extractor, torch.split(images, int(cfg["batch_size"])),
                        neighbourhood=sp.neighbourhood, channels=sp.channels, device=device)


def bank_patches(sp: FeatureSpec, images: torch.Tensor, cfg: Mapping[str, Any], *, device: str = "cpu",
                 seed: int = 0) -> tuple[torch.Tensor, int]:
    """The memory bank as rows ``(M, D)``, built batch by batch, and the patch count before the limit.

    With ``bank_limit``, each image contributes the same number of random positions (seeded), so
    the full bank never has to fit in memory at once.
    """
    gen = torch.Generator().manual_seed(seed)
    per_image = per_image_limit(cfg["bank_limit"], len(images))
    rows, total = [], 0
    for batch in torch.split(images, int(cfg["batch_size"])):
        emb = embed(sp, batch, cfg, device)
        total += emb.shape[0] * emb.shape[2] * emb.shape[3]
        rows.append(sample_positions(emb, per_image, gen))
    return torch.cat(rows), total


@dataclass
class Fitted:
    """A fitted PatchCore or PaDiM with its spec and cost."""

    variant: str
    method: str
    spec: FeatureSpec
    model: PatchCore | Padim
    train_seconds: float
    """Feature extraction + fitting of the defect-free training images (the stored value on reuse)."""
    reused: bool = False
    checkpoint: Path | None = None

    @property
    def memory_bytes(self) -> int:
        """Size of what scoring needs besides the backbone (bank or Gaussians)."""
        return self.model.memory_bytes


def _new_model(variant: str, cfg: Mapping[str, Any], seed: int) -> PatchCore | Padim:
    if variant == "patchcore":
        return PatchCore(cfg["coreset_ratio"], cfg["bank_limit"], cfg["proj_dim"], cfg["reweight"],
                         cfg["neighbours"], seed)
    return Padim(cfg["padim_eps"])


def _state(model: PatchCore | Padim) -> dict[str, Any]:
    if isinstance(model, PatchCore):
        return {"bank": model.bank, "order": model.order}
    return {"mean": model.mean, "precision": model.precision, "shape": list(model.shape)}


def _restore(model: PatchCore | Padim, state: Mapping[str, Any]) -> None:
    if isinstance(model, PatchCore):
        model.bank, model.order = state["bank"], state["order"]
    else:
        model.mean, model.precision, model.shape = state["mean"], state["precision"], tuple(state["shape"])


def train(data: Data, cfg: dict[str, Any], variant: str, *, results_dir: str | Path, run: str,
          device: str = "cpu", force: bool = False, progress: bool = True, seed: int = 0) -> Fitted:
    """Fit ``variant`` on the defect-free training images, or reuse its checkpoint.

    The checkpoint holds the bank (or the Gaussians), the channel subset and the fit time; it is
    written atomically and loaded with ``weights_only=True``. ``force`` refits.
    """
    sp = spec(data, cfg, variant)
    model = _new_model(variant, cfg, seed)
    path = experiment.checkpoint_path(results_dir, NOTEBOOK, variant, run)
    if path.exists() and not force:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - an unreadable file is refitted, not fatal
            warnings.warn(f"{path} cannot be read ({exc}); fitting again and replacing it.", stacklevel=2)
            state = {}
        if state.get("format") == FORMAT and state.get("channels") == sp.channels:
            _restore(model, state["model"])
            return Fitted(variant, method_name(variant, cfg), sp, model,
                          float(state["train_seconds"]), reused=True, checkpoint=path)
    start = time.perf_counter()
    if isinstance(model, PatchCore):
        rows, total = bank_patches(sp, data.train, cfg, device=device, seed=seed)
        model.fit_patches(rows, total=total, progress=progress)
    else:  # float16 embeddings halve the memory; the Gaussians are estimated in float64
        model.fit(torch.cat([embed(sp, b, cfg, device).half()
                             for b in torch.split(data.train, int(cfg["batch_size"]))]))
    seconds = time.perf_counter() - start
    save_checkpoint({"format": FORMAT, "variant": variant, "model": _state(model),
                     "channels": sp.channels, "train_seconds": seconds}, path)
    return Fitted(variant, method_name(variant, cfg), sp, model, seconds, checkpoint=path)


# --------------------------------------------------------------------------- scoring and evaluation


@dataclass
class Scored:
    """Image-size anomaly maps, image scores and the scoring time of one set of images."""

    maps: np.ndarray
    scores: np.ndarray
    seconds: float


def score(fitted: Fitted, images: torch.Tensor, cfg: Mapping[str, Any], device: str = "cpu") -> Scored:
    """Anomaly maps (patch distances upsampled to the image and smoothed) and image scores.

    The image score is as in the papers: the largest patch score (PatchCore, optionally
    reweighted) or the maximum of the map (PaDiM).
    """
    start = time.perf_counter()
    maps, scores = [], []
    size = tuple(images.shape[-2:])
    for batch in torch.split(images, int(cfg["batch_size"])):
        patch, image = fitted.model.patch_scores(embed(fitted.spec, batch, cfg, device))
        m = to_image_maps(patch, size, float(cfg["map_sigma"]))
        maps.append(m)
        scores.append(image.numpy() if fitted.variant == "patchcore" else m.reshape(len(m), -1).max(1))
    return Scored(np.concatenate(maps), np.concatenate(scores).astype(np.float64),
                  time.perf_counter() - start)


@dataclass
class FeatureEvaluation(experiment.Evaluation):
    """:class:`adlib.experiment.Evaluation` plus the scoring cost of the test images."""

    score_seconds: float = 0.0


def evaluate(fitted: Fitted | Sequence[Fitted], data: Data, cfg: Mapping[str, Any],
             device: str = "cpu") -> list[FeatureEvaluation]:
    """Score validation and test images; honest thresholds from the validation normals."""
    out = []
    for f in [fitted] if isinstance(fitted, Fitted) else list(fitted):
        val, test = score(f, data.val, cfg, device), score(f, data.test, cfg, device)
        spec = threshold_rules.RuleSpec.for_maps(val.maps.shape, rate=1 - float(cfg["pixel_threshold_q"]),
                                                 image_q=float(cfg["image_threshold_q"]))
        masked = data.test_masks is not None
        ev = experiment.evaluate(
            f.method, scores=test.scores, labels=data.labels, defects=data.defects, paths=data.paths,
            val_scores=val.scores, image_q=cfg["image_threshold_q"], maps=test.maps,
            masks=data.test_masks, val_maps=val.maps if masked else None,
            pixel_rule=PIXEL_RULE if masked else None, rule_spec=spec)
        fields = {k: getattr(ev, k) for k in ev.__dataclass_fields__}
        out.append(FeatureEvaluation(**fields, score_seconds=test.seconds))
    return out


def save(evals: Sequence[experiment.Evaluation], fitted: Fitted | Sequence[Fitted], data: Data,
         cfg: Mapping[str, Any], *, results_dir: str | Path, profile: str, seed: int, run: str) -> list[Path]:
    """One results file (+ scores CSV, model bundle) per evaluation, through :func:`adlib.experiment.save`."""
    from adlib.scoring.features import feature_bundle

    by_method = {f.method: f for f in ([fitted] if isinstance(fitted, Fitted) else fitted)}
    paths = []
    for ev in evals:
        f = by_method[ev.method]
        params = {
            "backbone": cfg["backbone"], "layers": list(layers(cfg, f.variant)), "border_pad": cfg["border_pad"], "image_size": data.size,
            "map_sigma": cfg["map_sigma"], "memory_mb": f.memory_bytes / 2**20,
            "score_seconds_per_image": getattr(ev, "score_seconds", 0.0) / max(1, len(data.paths)),
            **({"coreset_ratio": cfg["coreset_ratio"], "bank_limit": cfg["bank_limit"],
                "bank_patches": int(len(f.model.bank)), "reweight": cfg["reweight"]}
               if f.variant == "patchcore" else
               {"padim_channels": len(f.spec.channels or []) or None, "padim_eps": cfg["padim_eps"]}),
        }
        paths.append(experiment.save(ev, results_dir=results_dir, notebook=NOTEBOOK, split=data.split,
                                     synthetic=data.synthetic, profile=profile, seed=seed, run=run,
                                     train_seconds=f.train_seconds, params=params,
                                     bundle=feature_bundle(ev, f, data, cfg, run)))
    return paths


def run_targets(cfg: dict[str, Any], targets: Sequence[Sequence[Any]], *, results_dir: str | Path, profile: str,
                seed: int, device: str = "cpu", force: bool = False, progress: bool = True) -> list[Path]:
    """Load, fit, evaluate and save both variants on each ``[dataset, category]`` stand-in in turn
    (one run id each; memory is released between targets). Returns the results files."""
    from tqdm.auto import tqdm

    paths: list[Path] = []
    for dataset, category in tqdm(list(targets), desc="datasets", disable=not progress):
        run = experiment.run_id(seed, cfg, exclude=SELECTION, data_root=None, dataset=dataset, category=category)
        data = load(cfg, dataset=dataset, data_root=None, category=category, seed=seed, progress=False)
        fitted = [train(data, cfg, v, results_dir=results_dir, run=run, device=device, force=force,
                        progress=False, seed=seed) for v in VARIANTS]
        paths += save(evaluate(fitted, data, cfg, device), fitted, data, cfg, results_dir=results_dir,
                      profile=profile, seed=seed, run=run)
        del data, fitted
    return paths
