"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with
k-reciprocal Encoding", CVPR 2017), vectorised in torch.

The same computation as the authors' released code, which torchreid (``re_ranking``) and
fast-reid ship; it is recomputed here without Python loops over images:

1. ``D`` = the ``(Q+G) x (Q+G)`` matrix of *squared* input distances over queries and
   gallery together, each row divided by its maximum (column maximum, then transposed, as
   the original; the same for symmetric input).
2. ``R(i, k)`` = the k-reciprocal neighbours of ``i``: the ``k+1`` nearest rows of ``i``
   (itself included) that have ``i`` among their own ``k+1`` nearest.
3. ``R*(i)`` = ``R(i, k1)`` joined with ``R(c, round(k1/2))`` of every ``c`` in ``R(i, k1)``
   that shares more than two thirds of its members with ``R(i, k1)``.
4. ``V[i, j] = exp(-D[i, j])`` over ``j`` in ``R*(i)``, normalised to sum 1; with
   ``k2 > 1`` each row is replaced by the mean of the rows of its ``k2`` nearest (local
   query expansion).
5. Jaccard distance ``J[i, j] = 1 - m / (2 - m)``, ``m = sum_k min(V[i, k], V[j, k])``.
6. Result: ``(1 - lambda) * J + lambda * D``, query rows by gallery columns.

Ties in ``D`` are broken by index (stable sort); the original's ``np.argsort`` leaves their
order unspecified. A row whose maximum is 0 (all points identical) is left at 0 instead of
dividing by 0.

Cross-modality use: the query set is one modality and the gallery the other (SYSU-MM01:
thermal queries, visible gallery), so ``q_q_dist`` holds same-modality distances between
queries and ``g_g_dist`` between gallery images; only ``q_g_dist`` crosses the modality
gap. See ``docs/evaluation-options.md`` for what that does to the neighbourhoods.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["ReRanking", "re_ranking"]


@dataclass(frozen=True)
class ReRanking:
    """Parameters of :func:`re_ranking`; the defaults are the paper's (20, 6, 0.3).

    Example:
        >>> ReRanking()
        ReRanking(k1=20, k2=6, lambda_value=0.3)
    """

    k1: int = 20
    k2: int = 6
    lambda_value: float = 0.3

    def __post_init__(self) -> None:
        from mag_mmt.errors import UserError

        for name in ("k1", "k2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"re-ranking {name} must be a positive int, got {value!r}")
        lam = self.lambda_value
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0.0 <= lam <= 1.0:
            raise UserError(f"re-ranking lambda_value must be in [0, 1], got {lam!r}")

    def __call__(self, q_g_dist: torch.Tensor, q_q_dist: torch.Tensor, g_g_dist: torch.Tensor) -> torch.Tensor:
        return re_ranking(q_g_dist, q_q_dist, g_g_dist, self.k1, self.k2, self.lambda_value)


def _check(q_g: torch.Tensor, q_q: torch.Tensor, g_g: torch.Tensor) -> None:
    for name, x in (("q_g_dist", q_g), ("q_q_dist", q_q), ("g_g_dist", g_g)):
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or not x.is_floating_point():
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must be a 2-D floating tensor, got {shape}")
    q, g = q_g.shape
    if q == 0 or g == 0:
        raise ValueError(f"q_g_dist must have at least one query and one gallery column, got {(q, g)}")
    if tuple(q_q.shape) != (q, q) or tuple(g_g.shape) != (g, g):
        raise ValueError(
            f"expected q_q_dist {(q, q)} and g_g_dist {(g, g)} for q_g_dist {(q, g)}, "
            f"got {tuple(q_q.shape)} and {tuple(g_g.shape)}"
        )


def _nearest(d: torch.Tensor, keep: int, rows_per_chunk: int) -> torch.Tensor:
    """``(N, keep)`` column indices of each row's ``keep`` smallest entries, ties by index."""
    parts = [
        torch.sort(d[i : i + rows_per_chunk], dim=1, stable=True).indices[:, :keep]
        for i in range(0, d.shape[0], rows_per_chunk)
    ]
    return torch.cat(parts)


def _reciprocal(order: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k+1`` nearest of each row and whether each of them has the row among its own."""
    n = order.shape[0]
    near = order[:, : k + 1]
    member = torch.zeros(n, n, dtype=torch.bool, device=order.device)
    member.scatter_(1, near, True)
    rows = torch.arange(n, device=order.device).unsqueeze(1)
    return near, member[near, rows]


def re_ranking(
    q_g_dist: torch.Tensor,
    q_q_dist: torch.Tensor,
    g_g_dist: torch.Tensor,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    *,
    chunk_elements: int = 1 << 24,
) -> torch.Tensor:
    """k-reciprocal re-ranked ``(Q, G)`` distances (Zhong et al. 2017; see the module text).

    Args:
        q_g_dist: ``(Q, G)`` query-gallery distances (e.g. Euclidean; they are squared, as in
            the original code).
        q_q_dist: ``(Q, Q)`` query-query distances.
        g_g_dist: ``(G, G)`` gallery-gallery distances.
        k1, k2, lambda_value: neighbourhood size, query-expansion size (1: none) and the
            weight of the original distance; the paper's defaults 20, 6, 0.3.
        chunk_elements: bound on the temporaries of the sort and the Jaccard step.

    Returns:
        ``(Q, G)`` distances (float32, float64 for float64 input) on the input's device;
        smaller is closer. Memory: a few ``(Q+G)^2`` tensors.

    Example:
        >>> import torch
        >>> q, g = torch.tensor([[0.0], [5.0]]), torch.tensor([[0.2], [4.9], [9.0]])
        >>> d = re_ranking(torch.cdist(q, g), torch.cdist(q, q), torch.cdist(g, g), k1=2, k2=1)
        >>> d.argmin(dim=1).tolist()
        [0, 1]
    """
    ReRanking(k1, k2, lambda_value)  # argument checks
    _check(q_g_dist, q_q_dist, g_g_dist)
    dtype = torch.float64 if q_g_dist.dtype == torch.float64 else torch.float32
    q, g = q_g_dist.shape
    n = q + g
    with torch.no_grad():
        full = torch.cat(
            (torch.cat((q_q_dist, q_g_dist), 1), torch.cat((q_g_dist.t(), g_g_dist), 1)), 0
        ).to(dtype).pow(2)
        full = (full / full.max(dim=0, keepdim=True).values.clamp_min(torch.finfo(dtype).tiny)).t().contiguous()
        half = int(round(k1 / 2))  # round half to even, as np.around
        order = _nearest(full, max(k1 + 1, k2, half + 1), max(1, chunk_elements // n))

        near, recip = _reciprocal(order, k1)  # (N, a): R(i, k1) = near[i][recip[i]]
        near_h, recip_h = _reciprocal(order, half)  # (N, b)
        in_r = torch.zeros(n, n, dtype=torch.bool, device=full.device)
        in_r.scatter_(1, near, recip)
        # every candidate c = near[i, a] with its own half-size reciprocal set near_h[c][recip_h[c]]
        cand, cand_mask = near_h[near], recip_h[near]  # (N, a, b)
        a, b = cand.shape[1], cand.shape[2]
        shared = (in_r.gather(1, cand.reshape(n, a * b)).reshape(n, a, b) & cand_mask).sum(-1)
        size = cand_mask.sum(-1)
        accept = recip & (shared.to(torch.float64) > (2.0 / 3) * size.to(torch.float64))
        grow = (accept.unsqueeze(-1) & cand_mask).reshape(n, a * b).to(torch.uint8)
        expanded = in_r.to(torch.uint8).scatter_reduce_(1, cand.reshape(n, a * b), grow, reduce="amax")

        weights = torch.where(expanded.bool(), torch.exp(-full), torch.zeros((), dtype=dtype, device=full.device))
        v = weights / weights.sum(dim=1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
        if k2 != 1:
            step = max(1, chunk_elements // (n * k2))
            v = torch.cat([v[order[i : i + step, :k2]].mean(dim=1) for i in range(0, n, step)])

        # Jaccard between query rows and gallery rows over the few non-zero entries of each query row
        width = max(1, int((v[:q] > 0).sum(dim=1).max()))
        vals, cols = v[:q].topk(width, dim=1)
        v_gallery = v[q:]
        step = max(1, chunk_elements // (g * width))
        jaccard = torch.empty(q, g, dtype=dtype, device=full.device)
        for i in range(0, q, step):
            c = cols[i : i + step]
            other = v_gallery.index_select(1, c.reshape(-1)).reshape(g, c.shape[0], width)
            overlap = torch.minimum(other, vals[i : i + step].unsqueeze(0)).sum(dim=-1).t()
            jaccard[i : i + step] = 1 - overlap / (2 - overlap)
        return jaccard * (1 - lambda_value) + full[:q, q:] * lambda_value
