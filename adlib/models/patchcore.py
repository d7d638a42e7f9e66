"""PatchCore (Roth et al., CVPR 2022): a memory bank of defect-free patch embeddings.

Fitting stores the embedding of every position of every defect-free training image (the memory
bank) and keeps a coreset of it: greedy k-center selection picks, again and again, the stored
patch farthest from everything kept so far, so that a few percent of the bank still cover all
the normal variation. Scoring a test patch is its distance to the nearest patch in the coreset;
an image's score is the largest patch score. With ``reweight=True`` that maximum is weighted as
in the paper's eq. 7: when the memory patch nearest to the image's most anomalous patch is
itself far from its neighbours in the bank (a rare normal appearance), the score is raised
relative to one whose match sits in a dense, well-covered region.

The greedy order is incremental: the first ``n`` picks are the coreset of size ``n``, so one run
to the largest ratio gives every smaller one (the notebook's coreset study uses that).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

__all__ = ["greedy_coreset", "nearest_distances", "per_image_limit", "sample_positions", "PatchCore"]


def per_image_limit(bank_limit: int | None, n_images: int) -> int | None:
    """Positions each image may add to the bank so that ``n_images`` add about ``bank_limit``."""
    return None if bank_limit is None else max(1, -(-int(bank_limit) // max(1, n_images)))


def sample_positions(embeddings: torch.Tensor, per_image: int | None,
                     gen: torch.Generator) -> torch.Tensor:
    """Bank rows ``(M, D)`` of embeddings ``(N, D, h, w)``: every position, or ``per_image``
    random positions of each image (the bank limit, applied the same way batch by batch)."""
    n, d, h, w = embeddings.shape
    flat = embeddings.permute(0, 2, 3, 1).reshape(n, h * w, d).float()
    if per_image is not None and per_image < h * w:
        idx = torch.stack([torch.randperm(h * w, generator=gen)[:per_image] for _ in range(n)])
        flat = torch.gather(flat, 1, idx[..., None].expand(-1, -1, d))
    return flat.reshape(-1, d).contiguous()


def greedy_coreset(x: torch.Tensor, n: int, *, proj_dim: int | None = 128, seed: int = 0,
                   progress: bool = False, times: list[float] | None = None) -> torch.Tensor:
    """Indices of ``n`` rows of ``x`` ``(N, D)`` chosen by greedy k-center selection, in pick order.

    Distances are computed after a random Gaussian projection to ``proj_dim`` dimensions
    (Johnson-Lindenstrauss; the paper projects to 128) when ``D > proj_dim``, which makes each of
    the ``n`` passes over the bank cheaper. The first pick is random (``seed``). ``times``, when
    given, receives the seconds elapsed after each pick (the cost of every smaller coreset).
    """
    start = time.perf_counter()
    x = x.float()
    total = x.shape[0]
    if not 1 <= n <= total:
        raise ValueError(f"coreset size must be in 1..{total}, got {n}")
    gen = torch.Generator().manual_seed(seed)
    if proj_dim is not None and x.shape[1] > proj_dim:
        proj = torch.randn(x.shape[1], proj_dim, generator=gen) / math.sqrt(proj_dim)
        x = x @ proj
    x = x.contiguous()
    sq = (x * x).sum(1)
    picked = torch.empty(n, dtype=torch.long)
    j = int(torch.randint(total, (1,), generator=gen))
    min_d = torch.full((total,), float("inf"))
    for i in tqdm(range(n), desc="coreset", disable=not progress, leave=False, mininterval=1.0):
        picked[i] = j
        c = x[j]
        # squared distance of every row to the new centre: |x|^2 - 2 x.c + |c|^2, in one pass
        torch.minimum(min_d, torch.addmv(sq, x, c, alpha=-2.0) + c @ c, out=min_d)
        j = int(torch.argmax(min_d))
        if times is not None:
            times.append(time.perf_counter() - start)
    return picked


def nearest_distances(queries: torch.Tensor, bank: torch.Tensor, k: int = 1,
                      chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean distances ``(M, k)`` and indices of the ``k`` nearest bank rows of each query."""
    d_all, i_all = [], []
    bank_sq = (bank * bank).sum(1)
    for q in torch.split(queries.float(), chunk):
        d2 = (q * q).sum(1, keepdim=True) - 2.0 * q @ bank.T + bank_sq
        d, i = torch.topk(d2, k, dim=1, largest=False)
        d_all.append(d.clamp_min(0).sqrt())
        i_all.append(i)
    return torch.cat(d_all), torch.cat(i_all)


@dataclass
class PatchCore:
    """Memory bank + coreset + nearest-neighbour scoring on patch embeddings ``(N, D, h, w)``.

    Args:
        coreset_ratio: share of the bank kept (0 < r <= 1; 1 keeps every patch).
        bank_limit: when the bank holds more patches than this, about this many random positions
            (the same number from each image, seeded) enter the coreset selection, and
            ``coreset_ratio`` applies to them; this caps the selection's cost on large images
            (None: no limit).
        proj_dim: projection used only to select the coreset (None: none).
        reweight: the paper's image-score reweighting (eq. 7) with ``neighbours`` memory patches.
        neighbours: ``b`` of eq. 7.
        seed: first coreset pick.
    """

    coreset_ratio: float = 0.1
    bank_limit: int | None = None
    proj_dim: int | None = 128
    reweight: bool = False
    neighbours: int = 3
    seed: int = 0
    bank: torch.Tensor | None = field(default=None, repr=False)
    order: torch.Tensor | None = field(default=None, repr=False)
    """Greedy pick order over the full bank (the coreset is ``full[order]``)."""
    pick_seconds: list[float] = field(default_factory=list, repr=False)
    """Seconds of the selection after each pick (measured in :meth:`fit`)."""
    bank_total: int = 0
    """Patches in the bank before the limit and the coreset."""

    def fit(self, embeddings: torch.Tensor, *, progress: bool = False) -> PatchCore:
        """Build the memory bank from defect-free embeddings ``(N, D, h, w)`` and keep its coreset."""
        n, _, h, w = embeddings.shape
        gen = torch.Generator().manual_seed(self.seed)
        rows = sample_positions(embeddings, per_image_limit(self.bank_limit, n), gen)
        return self.fit_patches(rows, total=n * h * w, progress=progress)

    def fit_patches(self, patches: torch.Tensor, *, total: int | None = None,
                    progress: bool = False) -> PatchCore:
        """Keep the coreset of a bank given as rows ``(M, D)`` (already limited to ``bank_limit``;
        ``total``: the patches there were before that limit, for the record)."""
        if not 0 < self.coreset_ratio <= 1:
            raise ValueError(f"coreset_ratio must be in (0, 1], got {self.coreset_ratio}")
        full = patches.float()
        self.bank_total = int(total or full.shape[0])
        n = max(1, round(self.coreset_ratio * full.shape[0]))
        if n >= full.shape[0]:
            self.order = torch.arange(full.shape[0])
        else:
            self.pick_seconds = []
            self.order = greedy_coreset(full, n, proj_dim=self.proj_dim, seed=self.seed,
                                        progress=progress, times=self.pick_seconds)
        self.bank = full[self.order].contiguous()
        return self

    def with_size(self, n: int) -> PatchCore:
        """A copy that keeps only the first ``n`` greedy picks (a smaller coreset, no refit)."""
        if self.bank is None:
            raise RuntimeError("PatchCore.fit must be called first.")
        small = PatchCore(n / max(1, len(self.order)) * self.coreset_ratio, self.bank_limit,
                          self.proj_dim, self.reweight, self.neighbours, self.seed)
        small.bank, small.order = self.bank[:n].contiguous(), self.order[:n]
        small.pick_seconds, small.bank_total = self.pick_seconds[:n], self.bank_total
        return small

    def patch_scores(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-position nearest distances ``(N, h, w)`` and image scores ``(N,)``."""
        if self.bank is None:
            raise RuntimeError("PatchCore.fit must be called before scoring.")
        n, d, h, w = embeddings.shape
        flat = embeddings.permute(0, 2, 3, 1).reshape(-1, d)
        dist, idx = nearest_distances(flat, self.bank, k=1)
        maps = dist[:, 0].reshape(n, h * w)
        best = maps.argmax(1)
        image = maps.gather(1, best[:, None])[:, 0]
        if self.reweight and len(self.bank) > 1:
            image = image * self._weights(flat.reshape(n, h * w, d), idx[:, 0].reshape(n, h * w), best)
        return maps.reshape(n, h, w), image

    def _weights(self, flat: torch.Tensor, nn_idx: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
        """Eq. 7: ``1 - exp(|m_test - m*|) / sum_b exp(|m_test - m_b|)`` over ``m*``'s neighbours."""
        rows = torch.arange(len(best))
        m_test = flat[rows, best]  # the most anomalous test patch of each image
        m_star = self.bank[nn_idx[rows, best]]  # its nearest memory patch
        b = min(self.neighbours, len(self.bank) - 1)
        _, nb = nearest_distances(m_star, self.bank, k=b + 1)  # m* itself and its b neighbours
        d = torch.cdist(m_test[:, None], self.bank[nb])[:, 0]  # (N, b + 1)
        return 1.0 - torch.softmax(d, dim=1)[:, 0]

    @property
    def memory_bytes(self) -> int:
        """Size of the kept memory bank in bytes."""
        return 0 if self.bank is None else self.bank.numel() * self.bank.element_size()
