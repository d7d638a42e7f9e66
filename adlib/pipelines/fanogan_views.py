"""Notebook 04's views: the seed's comparison table, decisions, encoder checks, GAN diagnostics,
sample-grid snapshots and the example rows (:mod:`adlib.pipelines.fanogan_vs_ae` trains and scores).

Everything here reads what the pipeline returns (:class:`~adlib.pipelines.fanogan_vs_ae.Data`,
:class:`~adlib.pipelines.fanogan_vs_ae.Trained`, :class:`adlib.experiment.Evaluation`); only
:func:`snapshot_callback` writes files (during GAN training, into the checkpoint's folder).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from adlib import metrics, published
from adlib.models import fanogan

if TYPE_CHECKING:
    from adlib.experiment import Evaluation
    from adlib.pipelines.fanogan_vs_ae import Data, Trained
    from adlib.train import History

__all__ = ["comparison_table", "decision_table", "encoder_checks", "example_rows", "examples",
           "gan_diagnostics", "seed_claims", "snapshot_callback", "snapshot_images"]

_SEED_NAMES = {"ae-256": "autoencoder", "f-anogan": "f-anogan"}
"""Our method names -> seed 001's names in :mod:`adlib.published`."""


def _pipeline():
    from adlib.pipelines import fanogan_vs_ae

    return fanogan_vs_ae


# --------------------------------------------------------------------------- tables


def comparison_table(data: Mapping[str, Data], trained: Mapping[str, Mapping[str, Trained]],
                     evals: Mapping[str, Mapping[str, Evaluation]]) -> pd.DataFrame:
    """Our image AUROC/AUPR beside seed 001's published numbers, one row per (method, category).

    Args:
        data: ``{category: Data}``.
        trained, evals: ``{category: {method: Trained | Evaluation}}``.
    """
    pub = published.published_table(seed="001")
    rows = []
    for category, by_method in evals.items():
        for method, ev in by_method.items():
            row = {"method": method, "category": category,
                   "data": "synthetic" if data[category].synthetic else "real",
                   "AUROC (ours)": ev.metrics["image_auroc"], "AUPR (ours)": ev.metrics["image_aupr"]}
            for metric, col in (("image_auroc", "AUROC (seed 001)"), ("image_aupr", "AUPR (seed 001)")):
                hit = pub[(pub["category"] == category) & (pub["method"] == _SEED_NAMES.get(method))
                          & (pub["metric"] == metric)]
                row[col] = float(hit["value"].iloc[0]) if len(hit) else None
            row["train s"] = round(trained[category][method].train_seconds, 1)
            rows.append(row)
    cols = ["method", "category", "data", "AUROC (ours)", "AUROC (seed 001)", "AUPR (ours)",
            "AUPR (seed 001)", "train s"]
    return pd.DataFrame(rows, columns=cols)


def decision_table(ev: Evaluation) -> pd.DataFrame:
    """Image-level precision/recall/F1 at the honest (validation) and the ORACLE threshold."""
    rows = []
    for thr in (ev.image_threshold, ev.oracle_image):
        if thr is None:  # no oracle without both classes
            continue
        prf = metrics.image_prf(ev.scores, ev.labels, thr.value)
        rows.append({"method": ev.method, "threshold source": thr.source, "threshold": thr.value,
                     "precision": prf.precision, "recall": prf.recall, "F1": prf.f1})
    return pd.DataFrame(rows)


def example_rows(ev: Evaluation, per_defect: int = 1) -> list[int]:
    """Indices of test images to show: the first ``per_defect`` of every defect type (good first)."""
    defects = list(ev.defects)
    order = ["good"] + sorted({d for d in defects if d != "good"})
    idx: list[int] = []
    for d in order:
        idx += [i for i, name in enumerate(defects) if name == d][:per_defect]
    return idx


def examples(trained: Trained, data: Data, cfg: Mapping[str, Any], ev: Evaluation,
             per_defect: int = 1) -> dict[str, Any]:
    """Test images, reconstructions and maps of :func:`example_rows`, as keywords of
    :func:`adlib.viz.result_grid` (at the model's image size; titles hold the image scores)."""
    pipe = _pipeline()
    rows = example_rows(ev, per_defect)
    x = torch.stack([data.datasets(trained.variant).test[i]["image"] for i in rows])
    recon, _, _ = pipe.score_fn(trained, dict(cfg))(x.to(next(trained.model.parameters()).device))
    return {"images": x.numpy(), "recons": recon.cpu().numpy(), "residual_maps": ev.maps[rows],
            "gt_masks": None if ev.masks is None else ev.masks[rows],
            "titles": [f"{ev.defects[i]} ({ev.scores[i]:.3g})" for i in rows]}


# --------------------------------------------------------------------------- quality checks


@torch.no_grad()
def encoder_checks(trained: Trained, data: Data, n: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """The seed's encoder checks, images in [0, 1].

    Returns:
        ``{"x", "x_recon"}``: defect-free validation images and ``G(E(x))``;
        ``{"g_z", "g_cycle"}``: generated images ``G(z)`` and ``G(E(G(z)))`` (the z cycle).
    """
    pipe = _pipeline()
    gen, enc = trained.generator.eval(), trained.encoder.eval()
    dev = next(gen.parameters()).device
    ds = data.gan.val if len(data.gan.val) else data.gan.train
    x = pipe.stack(ds, n).to(dev)
    z = fanogan.sample_latent(n, gen.latent_dim, generator=torch.Generator().manual_seed(seed)).to(dev)
    g_z = gen(z)
    out = {"x": x, "x_recon": pipe.denormalise(gen(enc(pipe.normalise(x)))),
           "g_z": pipe.denormalise(g_z), "g_cycle": pipe.denormalise(gen(enc(g_z)))}
    return {k: v.clamp(0, 1).cpu().numpy() for k, v in out.items()}


def _mean_pairwise_distance(x: torch.Tensor) -> float:
    flat = x.flatten(1).double()
    n = len(flat)
    return float(torch.cdist(flat, flat).sum() / (n * (n - 1)))


@torch.no_grad()
def gan_diagnostics(trained: Trained, data: Data, n: int = 256, seed: int = 0) -> dict[str, Any]:
    """Numbers that show whether the GAN trained and how well it covers normal images.

    Computed from this run only (training history, generator, encoder, defect-free validation
    images); no test data is used.

    Returns:
        ``peak_wasserstein``/``peak_epoch`` (largest epoch-mean Wasserstein estimate),
        ``peak_gp``, ``final_wasserstein``/``final_gp`` (mean over the last tenth of the epochs),
        ``diversity`` (mean pairwise distance of ``n`` generated images divided by that of
        training images: near 1 is healthy, far below 1 means mode collapse),
        ``val_nearest_mse`` (per validation image, the MSE to the closest of the ``n`` generated
        images, averaged: lower = the generator covers the normal images better) and
        ``val_image_residual`` (mean ``||x - G(E(x))||^2 / n`` on validation images).
    """
    pipe = _pipeline()
    ep = trained.stages["gan"].history.to_frame("epoch")
    tail = ep.tail(max(1, len(ep) // 10))
    peak = int(ep["wasserstein"].idxmax())
    gen = trained.generator
    dev = next(gen.parameters()).device
    z = fanogan.sample_latent(n, gen.latent_dim, generator=torch.Generator().manual_seed(seed)).to(dev)
    # batch statistics, as the critic saw the generator in training (a copy: no buffer changes)
    fake = copy.deepcopy(gen).train()(z).cpu()
    real = pipe.normalise(pipe.stack(data.gan.train, n))
    val = pipe.normalise(pipe.stack(data.gan.val))
    nearest = (torch.cdist(val.flatten(1), fake.flatten(1)) ** 2).min(1).values / val[0].numel()
    recon = fanogan.anomaly_score(trained.encoder, gen.eval(), trained.critic, val.to(dev))
    return {
        "category": data.category,
        "peak_wasserstein": float(ep["wasserstein"].max()), "peak_epoch": int(ep["epoch"][peak]) + 1,
        "peak_gp": float(ep["gp"].max()),
        "final_wasserstein": float(tail["wasserstein"].mean()), "final_gp": float(tail["gp"].mean()),
        "diversity": _mean_pairwise_distance(fake) / _mean_pairwise_distance(real),
        "val_nearest_mse": float(nearest.mean()),
        "val_image_residual": float(recon["image_residual"].mean()),
    }


# --------------------------------------------------------------------------- snapshots


def _save_grid(images: torch.Tensor, path: Path) -> Path:
    """Images in [-1, 1] as one PNG grid, written atomically."""
    import torchvision.utils as vutils

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    vutils.save_image(((images + 1) / 2).clamp(0, 1), tmp, nrow=8, padding=2)
    tmp.replace(path)
    return path


def snapshot_callback(gen: fanogan.Generator, cfg: Mapping[str, Any], seed: int, folder: Path,
                      n: int = 32) -> Callable[[int, History], None]:
    """``on_epoch_end`` of the GAN stage: every ``sample_every`` epochs (and after the last) a
    sample grid of a fixed latent batch of ``n`` codes (``<folder>/samples/gan_epochNNNNN.png``)
    and the generator's weights (``<folder>/snapshots/generator_epochNNNNN.pt``)."""
    from adlib.train import save_checkpoint

    fixed_z = fanogan.sample_latent(n, cfg["latent_dim"], generator=torch.Generator().manual_seed(seed + 1))

    def keep(epoch: int, history: History) -> None:
        done = epoch + 1
        if done % cfg["sample_every"] and done != cfg["gan_epochs"]:
            return
        gen.eval()
        with torch.no_grad():
            _save_grid(gen(fixed_z.to(next(gen.parameters()).device)).cpu(),
                       folder / "samples" / f"gan_epoch{done:05d}.png")
        gen.train()
        save_checkpoint({"epoch": done, "generator": gen.state_dict()},
                        folder / "snapshots" / f"generator_epoch{done:05d}.pt")

    return keep


def snapshot_images(trained: Trained) -> tuple[list[np.ndarray], list[str]]:
    """The sample grids kept during GAN training (fixed latent batch) and their titles."""
    from adlib.data.io import read_image

    paths = trained.sample_grids
    return [read_image(p) for p in paths], [f"epoch {int(p.stem.split('epoch')[-1])}" for p in paths]


# --------------------------------------------------------------------------- seed claims


def _auroc(ev: Evaluation) -> str:
    """``"0.91 [0.85, 0.96]"``: image AUROC with its 95 % bootstrap interval when there is one."""
    from adlib.claims import fmt

    ci = (ev.ci95 or {}).get("image_auroc")
    return fmt(ev.metrics["image_auroc"]) + (f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "")


def seed_claims(data: Mapping[str, Data], evals: Mapping[str, Mapping[str, Evaluation]]) -> pd.DataFrame:
    """Seed 001's claims checked on this run's numbers (:mod:`adlib.claims`).

    Uses the categories ``bottle`` and ``carpet`` of ``evals`` (``{category: {method:
    Evaluation}}``); a claim about a category this run did not score is "not checked".
    "Fails" is made testable as: the 95 % bootstrap interval of the image AUROC reaches 0.5
    (chance).
    """
    from adlib.claims import Claim, all_of, claims_table, data_label, fmt, greater, number

    src = "seed 001 (001_029175154187f404.txt)"
    ae, gan = _pipeline().AE_METHOD, _pipeline().GAN_METHOD
    where = {c: data_label(d.synthetic, "MVTec", c) for c, d in data.items()}
    have = [c for c in ("bottle", "carpet") if c in evals and {ae, gan} <= set(evals[c])]
    auc = {(c, m): evals[c][m].metrics["image_auroc"] for c in have for m in (ae, gan)}
    claims = []
    for c in ("bottle", "carpet"):
        seed_vals = {"bottle": "0.922 vs 0.846", "carpet": "0.552 vs 0.439"}[c]
        if c in have:
            claims.append(Claim(
                f"f-AnoGAN beats the autoencoder on {c} (image AUROC {seed_vals})",
                f"{src}, Comparison & Limit (table)",
                f"image AUROC [95 % interval]: f-AnoGAN {_auroc(evals[c][gan])} vs autoencoder {_auroc(evals[c][ae])}",
                greater(auc[c, gan], auc[c, ae]), where[c]))
        else:
            claims.append(Claim(f"f-AnoGAN beats the autoencoder on {c}", f"{src}, Comparison & Limit (table)",
                                f"not measurable: {c} was not run (CATEGORIES)", None, "-"))
    both = "; ".join(where[c] for c in have) or "-"
    if len(have) == 2:
        claims.append(Claim(
            "both models do worse on carpet than on bottle", f"{src}, Comparison & Limit",
            "; ".join(f"{m}: carpet {fmt(auc['carpet', m])} vs bottle {fmt(auc['bottle', m])}" for m in (ae, gan)),
            all_of(*(greater(auc["bottle", m], auc["carpet", m]) for m in (ae, gan))), both))
    else:
        claims.append(Claim("both models do worse on carpet than on bottle", f"{src}, Comparison & Limit",
                            "not measurable: needs both bottle and carpet", None, both))
    if "carpet" in have:
        lows = {m: (evals["carpet"][m].ci95 or {}).get("image_auroc") for m in (ae, gan)}
        verdicts = [None if lows[m] is None or number(lows[m][0]) is None else bool(lows[m][0] <= 0.5)
                    for m in (ae, gan)]
        claims.append(Claim(
            "both models fail on carpet (AE: cannot generate normal carpet; f-AnoGAN: no threshold separates)",
            f"{src}, Autoencoder 3. Result and GAN 8. Results",
            f"carpet image AUROC [95 % interval]: autoencoder {_auroc(evals['carpet'][ae])}, f-AnoGAN "
            f"{_auroc(evals['carpet'][gan])} (holds if both intervals reach 0.5, chance)",
            all_of(*verdicts), where["carpet"]))
    if len(have) == 2:
        recon = {}
        for c in have:
            ev = evals[c][gan]
            good = np.asarray(ev.labels) == 0
            recon[c] = float(np.asarray(ev.maps)[good].mean()) if ev.maps is not None and good.any() else None
        claims.append(Claim(
            "the GAN restores bottle well but not the carpet texture (blurry reconstructions)",
            f"{src}, GAN 6. and 7. (generator and encoder quality)",
            f"mean |x - G(E(x))| on defect-free test images: carpet {fmt(recon['carpet'])} vs bottle "
            f"{fmt(recon['bottle'])}", greater(recon["carpet"], recon["bottle"]), both))
    return claims_table(claims)
