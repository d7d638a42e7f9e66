"""Seed 003's claims (and Bergmann et al.'s SSIM claim), checked against notebook 03's numbers.

Every verdict is computed from the measured patch AUROCs of this run (:mod:`adlib.claims`); a
claim whose numbers are missing (a model not trained, no depth study) reads "not checked".
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from adlib.claims import Claim, all_of, claims_table, data_label, fmt, greater, number
from adlib.pipelines import sem_errors
from adlib.pipelines.sem_patches import MODEL_NAMES, SSIM_VARIANT, Data, PatchEvaluation

_SEED = "seed 003"
DEPTH_TOLERANCE = 0.02
"""Largest feature-mask AUROC difference between denoiser depths that still counts as "the same"."""


def _aurocs(evals: Iterable[PatchEvaluation]) -> dict[str, float | None]:
    return {ev.method: number(ev.metrics.get("image_auroc")) for ev in evals}


def _pairs(auc: dict[str, float | None], a: str, b: str, kinds: tuple[str, ...]
           ) -> tuple[bool | None, str]:
    """``auc[kind-a] > auc[kind-b]`` for every kind, and the numbers as text."""
    verdicts = [greater(auc.get(f"{k}-{a}"), auc.get(f"{k}-{b}")) for k in kinds]
    text = "; ".join(f"{MODEL_NAMES[k]} {fmt(auc.get(f'{k}-{a}'))} vs {fmt(auc.get(f'{k}-{b}'))}"
                     for k in kinds)
    return all_of(*verdicts), f"patch AUROC {a} vs {b}: {text}"


def seed_claims(evals: Iterable[PatchEvaluation], data: Data,
                depth_table: pd.DataFrame | None = None) -> pd.DataFrame:
    """The claims table of notebook 03: claim, source, what we measured, holds, data.

    Args:
        evals: the run's evaluations (the nine seed methods and ``ssim-ae-rec``).
        data: the run's data (for the ``data`` column).
        depth_table: :func:`adlib.pipelines.sem_views.depth_study` (for the depth claim), or None.
    """
    auc = _aurocs(evals)
    where = data_label(data.synthetic, "SEM", data.split.category)
    seed_methods = {m: v for m, v in auc.items() if not m.startswith(SSIM_VARIANT)}
    claims = []

    holds, text = _pairs(auc, "smooth", "rec", ("sae", "dae", "cvae"))
    claims.append(Claim("the denoiser's smoothed output scores better than plain reconstruction, "
                        "for all three autoencoders", f"{_SEED}, Experiments (Table 2 and its text)",
                        text, holds, where))
    holds, text = _pairs(auc, "feature", "rec", ("sae", "dae"))
    claims.append(Claim("the feature mask improves SAE and DAE over plain reconstruction",
                        f"{_SEED}, Experiments (Table 3 and its text)", text, holds, where))
    holds, text = _pairs(auc, "feature", "smooth", ("sae", "dae"))
    claims.append(Claim("feature mask > smoothing (SAE and DAE): the ranking feature > smooth > rec",
                        f"{_SEED}, Conclusion", text, holds, where))
    best = max((m for m, v in seed_methods.items() if v is not None), key=lambda m: seed_methods[m],
               default=None)
    claims.append(Claim("DAE + feature mask is the best of the nine combinations",
                        f"{_SEED}, Conclusion (Table 3)",
                        f"dae-feature {fmt(auc.get('dae-feature'))}; best: {best} {fmt(auc.get(best))}"
                        if best else "no seed method scored",
                        None if best is None or auc.get("dae-feature") is None else best == "dae-feature",
                        where))
    cv_rec, cv_feat = auc.get("cvae-rec"), auc.get("cvae-feature")
    no_gain = greater(cv_feat, cv_rec)
    claims.append(Claim("the CVAE gains nothing from the feature mask", f"{_SEED}, Experiments (Table 3 text)",
                        f"CVAE patch AUROC feature {fmt(cv_feat)} vs rec {fmt(cv_rec)}",
                        None if no_gain is None else not no_gain, where))
    claims.append(Claim("alone, the CVAE is the best of the three autoencoders",
                        f"{_SEED}, Experiments (Table 1) and Conclusion",
                        f"patch AUROC rec: CVAE {fmt(cv_rec)}, SAE {fmt(auc.get('sae-rec'))}, "
                        f"DAE {fmt(auc.get('dae-rec'))}",
                        all_of(greater(cv_rec, auc.get("sae-rec")), greater(cv_rec, auc.get("dae-rec"))),
                        where))
    claims.append(_depth_claim(depth_table, where))
    ssim, l2 = auc.get(f"{SSIM_VARIANT}-rec"), auc.get("sae-rec")
    claims.append(Claim("an SSIM-trained autoencoder detects SEM defects far better than an L2 one",
                        "Bergmann et al. 2019 (SSIM autoencoder), NanoTWICE experiment",
                        f"patch AUROC SSIM-AE (1 - SSIM) {fmt(ssim)} vs SAE (L2) {fmt(l2)}",
                        greater(ssim, l2), where))
    claims.append(_matched_claim(list(evals), data, where))
    return claims_table(claims)


def _matched_claim(evals: list[PatchEvaluation], data: Data, where: str) -> Claim:
    """Bergmann et al.'s diagnosis of L2: it misses regions whose structure changed while their
    intensity did not (here: large defect regions, scored against equally bright normal patches)."""
    claim = ("L2 reconstruction misses defects whose structure changes while their brightness stays "
             "about the same (films); SSIM does not")
    source = "Bergmann et al. 2019 (SSIM autoencoder), abstract and introduction"
    chosen = [ev for ev in evals if ev.method in ("sae-rec", f"{SSIM_VARIANT}-rec")]
    if len(chosen) < 2 or not (sem_errors.patch_defect_size(data) == "large").any():
        return Claim(claim, source, "needs sae-rec, ssim-ae-rec and large defect regions", None, where)
    ratio = sem_errors.brightness_matched(chosen, data)[("large", "x matched normals")]
    l2, ssim = number(ratio.get("sae-rec")), number(ratio.get(f"{SSIM_VARIANT}-rec"))
    return Claim(claim, source, f"large defect regions, median score / score of equally bright normal "
                 f"patches: SAE (L2) {fmt(l2)}, SSIM-AE {fmt(ssim)}",
                 all_of(greater(1.0, l2), greater(ssim, 1.0)), where)


def _depth_claim(table: pd.DataFrame | None, where: str) -> Claim:
    """The seed's "10 layers behave like 20" from the depth study (feature-mask AUROC per depth)."""
    claim, source = "a 10-layer denoiser performs like a 20-layer one", f"{_SEED}, Conclusion"
    if table is None or table.empty or table.index.get_level_values("depth").nunique() < 2:
        return Claim(claim, source, "no depth study with two depths in this run", None, where)
    spread = table["AUROC feature"].groupby(level="model").agg(lambda s: float(s.max() - s.min()))
    text = "; ".join(f"{m} {fmt(v)}" for m, v in spread.items())
    return Claim(claim, source, f"feature-mask AUROC spread over depths "
                 f"{sorted(set(table.index.get_level_values('depth')))}: {text} "
                 f"(same if <= {DEPTH_TOLERANCE})", bool((spread <= DEPTH_TOLERANCE).all()), where)
