"""Gathering a global batch across ``torch.distributed`` ranks, with gradients.

:func:`all_gather_with_grad` concatenates one tensor from every rank (rank order) and, in
backward, sums the gradient that every rank computed for the gathered tensor (all-reduce)
and hands each rank the slice of its own rows. So if rank ``r`` computes a loss ``L_r`` on the
gathered tensor, the gradient that reaches rank ``r``'s input is ``d(sum_s L_s)/d x_r``.
Every rank must therefore call ``backward`` (it is a collective).

Written as a small ``autograd.Function`` so it does not depend on ``torch.distributed.nn``.
All ranks must pass tensors of the same shape (a ``DistributedSampler`` with ``drop_last``
gives that); gloo and NCCL both work.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["is_distributed", "world_size", "rank", "all_gather_with_grad", "all_gather_no_grad", "all_reduce_sum"]


def is_distributed() -> bool:
    """True when ``torch.distributed`` is available and a process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def all_gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all ranks along dim 0 (rank order); no autograd."""
    if world_size() == 1:
        return x
    x = x.contiguous()
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x)
    return torch.cat(parts, dim=0)


class _AllGatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.rank = rank()
        ctx.rows = x.shape[0]
        return all_gather_no_grad(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.rows
        return grad[start : start + ctx.rows]


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (``(n, ...)`` on every rank) into ``(world_size * n, ...)``.

    Backward sums the gradients of all ranks for the gathered tensor and returns this rank's
    rows. Without an initialised process group (or with one rank) it returns ``x`` itself.

    Example (single process, no group: identity):
        >>> import torch
        >>> from mag_mmt.distributed import all_gather_with_grad
        >>> all_gather_with_grad(torch.ones(2, 3)).shape
        torch.Size([2, 3])
    """
    if world_size() == 1:
        return x
    return _AllGatherWithGrad.apply(x)


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over ranks, returned as a new tensor; no autograd (use for counts)."""
    if world_size() == 1:
        return x
    out = x.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out
