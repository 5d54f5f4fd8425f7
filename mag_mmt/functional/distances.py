"""Distances between embeddings, always computed in float32.

Two forms share one definition of each metric:

* :func:`pairwise_distance` -- the full ``(N, M)`` matrix, via the Gram trick (one matmul);
  used for mining and by losses that need every pair.
* :func:`indexed_distance` -- ``d(x[i], r[index[i, k]])`` as ``(A, K)``, by direct differences;
  exact (no cancellation) and ``O(A * K * D)`` in forward and backward. The triplet losses mine
  indices without autograd (:func:`mining_scores`, one matmul) and recompute only the mined
  pairs with it. :func:`paired_distance` is its row-wise special case.

Conventions (all metrics):

* inputs of any floating dtype (fp16, bf16, fp64) are upcast to float32 (float64 stays
  float64) and autocast is switched off inside, so features with norms of 1e4 in fp16 do not
  overflow and the matmul does not silently run in half precision;
* ``"euclidean"`` uses ``sqrt(max(d2, eps))`` with ``eps = 1e-12``: the value at zero distance
  is 1e-6 instead of 0 and the gradient there is exactly 0 (finite), never NaN;
* ``"cosine"`` is ``1 - cos(x, y)`` of the L2-normalised inputs, in ``[0, 2]``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

__all__ = ["DISTANCES", "pairwise_distance", "paired_distance", "indexed_distance", "mining_scores", "as_float32"]

Distance = Literal["euclidean", "sqeuclidean", "cosine"]
DISTANCES: tuple[str, ...] = ("euclidean", "sqeuclidean", "cosine")

#: floor under squared distances before the square root (keeps sqrt' finite at 0)
SQRT_EPS = 1e-12
_SQRT_EPS_ROOT = 1e-6  # sqrt(SQRT_EPS)
_NORM_EPS = 1e-12


def check_distance(distance: str) -> str:
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
    return distance


def as_float32(x: torch.Tensor) -> torch.Tensor:
    """Upcast half/bfloat16 (and any float below 32 bits) to float32; keep float32/float64.

    Differentiable: gradients are cast back to the input dtype by autograd.
    """
    if x.dtype in (torch.float32, torch.float64):
        return x
    return x.float()


def _no_autocast(device: torch.device):
    return torch.autocast(device_type=device.type, enabled=False)


def pairwise_distance(
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    distance: Distance = "euclidean",
    normalize: bool = False,
) -> torch.Tensor:
    """Distance matrix between the rows of ``x`` and the rows of ``y``.

    Args:
        x: ``(N, D)`` floating.
        y: ``(M, D)`` floating, or ``None`` for ``y = x``.
        distance: ``"euclidean"`` (default), ``"sqeuclidean"`` or ``"cosine"``.
        normalize: L2-normalise the rows first.

    Returns:
        ``(N, M)`` float32 (float64 for float64 inputs), differentiable.

    For the Euclidean metrics both sets are first shifted by the (detached) mean of ``y``;
    distances are translation invariant, and the shift keeps the Gram trick accurate for
    features far from the origin.

    Example:
        >>> import torch
        >>> from mag_mmt.functional import pairwise_distance
        >>> x = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
        >>> pairwise_distance(x)
        tensor([[1.0000e-06, 5.0000e+00],
                [5.0000e+00, 1.0000e-06]])
    """
    check_distance(distance)
    same = y is None
    with _no_autocast(x.device):
        x = as_float32(x)
        y = x if same else as_float32(y)  # type: ignore[arg-type]
        if normalize or distance == "cosine":
            x = F.normalize(x, dim=-1, eps=_NORM_EPS)
            y = x if same else F.normalize(y, dim=-1, eps=_NORM_EPS)
        if distance == "cosine":
            return (1.0 - x @ y.transpose(-1, -2)).clamp(0.0, 2.0)
        center = y.detach().mean(dim=0, keepdim=True)
        x = x - center
        y = x if same else y - center
        x2 = x.pow(2).sum(dim=-1)
        y2 = x2 if same else y.pow(2).sum(dim=-1)
        # addmm keeps it at one fused matmul: x2 + y2 - 2 x y^T
        d2 = torch.addmm(x2.unsqueeze(1) + y2.unsqueeze(0), x, y.transpose(0, 1), alpha=-2.0)
        if distance == "sqeuclidean":
            return d2.clamp_min(0.0)
        return d2.clamp_min(SQRT_EPS).sqrt()


#: the gathered ``(rows * K, D)`` temporaries of :class:`_IndexedDistance` hold at most this many
#: elements (rows are processed in blocks; one block for typical batches)
GATHER_BLOCK_ELEMENTS = 1 << 22


def _row_blocks(a: int, k: int, dim: int) -> list[tuple[int, int]]:
    """Static ``[start, end)`` row blocks such that ``rows * k * dim <= GATHER_BLOCK_ELEMENTS``."""
    rows = max(1, GATHER_BLOCK_ELEMENTS // max(k * dim, 1))
    return [(s, min(s + rows, a)) for s in range(0, a, rows)]


class _IndexedDistance(torch.autograd.Function):
    """``d(x[i], r[index[i, k]])`` for prepared float inputs (unit rows for ``"cosine"``).

    Saves only the inputs, the index and the result. Forward and backward gather all ``K``
    columns of a block of rows at once (one ``index_select`` of ``rows * K`` rows, one
    broadcast difference, one reduction; backward one ``index_add_``), in row blocks of at
    most ``GATHER_BLOCK_ELEMENTS`` elements, so beyond the inputs and their gradients the
    temporaries are bounded by that size and a typical batch costs a handful of kernels."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, r: torch.Tensor | None, index: torch.Tensor, distance: str) -> torch.Tensor:  # type: ignore[override]
        # r=None means r is x (torch.compile cannot trace one tensor passed twice)
        ctx.self_ref = r is None
        r = x if r is None else r
        a, k = index.shape
        parts = []
        for s, e in _row_blocks(a, k, x.shape[1]):
            xb = x if e - s == a else x[s:e]
            picked = r.index_select(0, index[s:e].reshape(-1)).view(e - s, k, x.shape[1])  # (rows, K, D)
            if distance == "cosine":
                parts.append(1.0 - (picked.mul_(xb.unsqueeze(1))).sum(dim=2))
            else:
                parts.append(picked.sub_(xb.unsqueeze(1)).pow_(2).sum(dim=2))
        d = (parts[0] if len(parts) == 1 else torch.cat(parts)) if parts else x.new_zeros(a, k)
        if distance == "cosine":
            d = d.clamp(0.0, 2.0)
        elif distance == "euclidean":
            d = d.clamp_min(SQRT_EPS).sqrt()
        if ctx.self_ref:
            ctx.save_for_backward(x, index, d)
        else:
            ctx.save_for_backward(x, r, index, d)
        ctx.distance = distance
        return d

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        if ctx.self_ref:
            x, index, d = ctx.saved_tensors
            r = x
        else:
            x, r, index, d = ctx.saved_tensors
        want_x, want_r = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if ctx.self_ref:
            want_r = want_x
        if ctx.distance == "cosine":  # d = 1 - <x, r>
            coef = -grad
        elif ctx.distance == "sqeuclidean":  # d = |x - r|^2
            coef = 2.0 * grad
        else:  # d = |x - r|, zero gradient where the floor is active: finite at zero distance
            coef = torch.where(d > _SQRT_EPS_ROOT, grad / d, 0.0)
        a, k = index.shape
        dim = x.shape[1]
        blocks = _row_blocks(a, k, dim)
        single = len(blocks) == 1
        grad_x = None if (single or not want_x) else torch.zeros_like(x)
        grad_r = None if (ctx.self_ref or not want_r) else torch.zeros_like(r)
        for s, e in blocks:
            idx = index[s:e].reshape(-1)
            xb = x if e - s == a else x[s:e]
            c = (coef if e - s == a else coef[s:e]).unsqueeze(2)  # (rows, K, 1)
            picked = r.index_select(0, idx).view(e - s, k, dim)
            if ctx.distance == "cosine":  # d/dx = c * r, d/dr = c * x
                gx = picked.mul_(c).sum(dim=1) if want_x else None
                gr = (xb.unsqueeze(1) * c) if want_r else None
            else:  # d/dr = c * (r - x) = -d/dx
                gr = picked.sub_(xb.unsqueeze(1)).mul_(c)
                gx = gr.sum(dim=1).neg_() if want_x else None
            if want_x:
                if single:
                    grad_x = gx
                else:  # (earlier blocks may have scattered into these rows already)
                    grad_x[s:e].add_(gx)  # type: ignore[index, arg-type]
            target = grad_x if ctx.self_ref else grad_r
            if want_r and target is not None:
                # scatter_add_ with a row index broadcast over the features: one parallel
                # kernel (index_add_ is serial over the rows on CPU); rows added in order
                target.scatter_add_(0, idx.unsqueeze(1).expand(-1, dim), gr.reshape(-1, dim))  # type: ignore[union-attr]
        if grad_x is None and want_x:  # K == 0 or A == 0
            grad_x = torch.zeros_like(x)
        if ctx.self_ref:
            return grad_x, None, None, None
        return grad_x, grad_r, None, None


def indexed_distance(
    x: torch.Tensor,
    r: torch.Tensor,
    index: torch.Tensor,
    *,
    distance: Distance = "euclidean",
    normalize: bool = False,
) -> torch.Tensor:
    """Distances from each row of ``x`` to selected rows of ``r``: ``out[i, k] = d(x[i], r[index[i, k]])``.

    Computed by direct differences (exact, no Gram-trick cancellation) in ``O(A * K * D)``
    forward and backward, with the same metrics and conventions as :func:`pairwise_distance`.
    The triplet losses mine indices on the matrix without autograd and get their differentiable
    distances from here.

    Args:
        x: ``(A, D)`` floating; r: ``(M, D)`` floating; index: ``(A, K)`` int64 in ``[0, M)``.

    Returns:
        ``(A, K)`` float32 (float64 for float64 inputs), differentiable in ``x`` and ``r``.

    Example:
        >>> import torch
        >>> from mag_mmt.functional import indexed_distance
        >>> x, r = torch.zeros(1, 2), torch.tensor([[3.0, 4.0], [0.0, 1.0]])
        >>> indexed_distance(x, r, torch.tensor([[1, 0, 1]]))
        tensor([[1., 5., 1.]])
    """
    check_distance(distance)
    if index.dim() != 2 or index.shape[0] != x.shape[0]:
        raise ValueError(f"index must have shape (A, K) with A = {x.shape[0]}, got {tuple(index.shape)}")
    with _no_autocast(x.device):
        x = as_float32(x)
        r = as_float32(r)
        if normalize or distance == "cosine":
            x = F.normalize(x, dim=-1, eps=_NORM_EPS)
            r = F.normalize(r, dim=-1, eps=_NORM_EPS)
        if r is x:
            return _IndexedDistance.apply(x, None, index, distance)
        return _IndexedDistance.apply(x, r.to(x.dtype), index, distance)


def paired_distance(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    distance: Distance = "euclidean",
    normalize: bool = False,
) -> torch.Tensor:
    """Row-wise distance ``d(x[i], y[i])``, same metrics and conventions as
    :func:`pairwise_distance` (it is :func:`indexed_distance` with ``index[i] = [i]``).

    Args:
        x, y: ``(N, D)`` floating.

    Returns:
        ``(N,)`` float32 (float64 for float64 inputs), differentiable.

    Example:
        >>> import torch
        >>> from mag_mmt.functional import paired_distance
        >>> paired_distance(torch.zeros(2, 2), torch.tensor([[3.0, 4.0], [0.0, 1.0]]))
        tensor([5., 1.])
    """
    if x.shape != y.shape or x.dim() != 2:
        raise ValueError(f"x and y must both have shape (N, D), got {tuple(x.shape)} and {tuple(y.shape)}")
    index = torch.arange(x.shape[0], device=x.device).unsqueeze(1)
    return indexed_distance(x, y, index, distance=distance, normalize=normalize).squeeze(1)


def mining_operands(
    x: torch.Tensor, r: torch.Tensor, *, distance: Distance = "euclidean"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Prepare ``(x', r', bias)`` once for :func:`mining_scores_from` (which may then be called
    on chunks of rows of ``x'``). For the Euclidean metrics both sets are centred on the mean of
    ``r`` (accuracy far from the origin) and ``bias = |r'_j|^2``; for cosine (unit rows expected)
    they are returned as they are, ``bias = None``."""
    if distance == "cosine":
        return x, r, None
    center = r.mean(dim=0, keepdim=True)
    rc = r - center
    xc = rc if x is r else x - center
    return xc, rc, rc.pow(2).sum(dim=1)


def mining_scores_from(x: torch.Tensor, r: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``bias_j - 2 <x_i, r_j>`` (Euclidean) or ``-<x_i, r_j>`` (cosine, ``bias`` None): one matmul."""
    with _no_autocast(x.device):
        if bias is None:
            return -(x @ r.transpose(0, 1))
        return torch.addmm(bias.unsqueeze(0), x, r.transpose(0, 1), alpha=-2.0)


def mining_scores(x: torch.Tensor, r: torch.Tensor, *, distance: Distance = "euclidean") -> torch.Tensor:
    """``(A, M)`` scores that order each row like ``pairwise_distance(x, r)`` does, at the cost
    of one matmul: ``|r_j - c|^2 - 2 <x_i - c, r_j - c>`` (the row constant ``|x_i - c|^2`` and the
    square root dropped; ``c`` the mean of ``r``) for the Euclidean metrics, ``-<x_i, r_j>`` for
    cosine (inputs already unit rows). For arg-max/arg-min mining only; no autograd wanted.

    Example:
        >>> import torch
        >>> from mag_mmt.functional.distances import mining_scores
        >>> x = torch.tensor([[0.0], [1.0], [5.0]])
        >>> mining_scores(x, x).argmax(dim=1).tolist()  # the farthest row from each row
        [2, 2, 0]
    """
    return mining_scores_from(*mining_operands(x, r, distance=distance))
