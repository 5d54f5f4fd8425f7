"""Input checks shared by the whole library.

Shape, dtype and device checks cost nothing and always run. Checks of *values* (NaN, label
ranges, modality codes) need the host to read device memory; they are grouped into as few
reductions as possible and callers expose a ``validate=`` switch so the hot path can run
with zero host syncs. Under ``torch.compile`` tracing value checks are skipped.
Failed checks raise :class:`~mag_mmt.errors.UserError` (a ``ValueError``); a wrong type
raises ``TypeError``.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .errors import UserError

_INTEGER_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def is_compiling() -> bool:
    """True while ``torch.compile`` / dynamo traces the caller."""
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and hasattr(compiler, "is_compiling"):
        return bool(compiler.is_compiling())
    return False  # pragma: no cover - old torch


def check_tensor(x: object, name: str, ndim: int | Sequence[int] | None = None) -> torch.Tensor:
    """``x`` must be a tensor with ``ndim`` dimensions (one of them, if a sequence)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.dim() not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise UserError(f"{name} must have {want} dimensions, got shape {tuple(x.shape)}")
    return x


def check_integer(x: torch.Tensor, name: str) -> torch.Tensor:
    """``x`` must hold an integer dtype (bool and floating labels are rejected)."""
    if x.dtype not in _INTEGER_DTYPES:
        raise UserError(f"{name} must have an integer dtype, got {x.dtype}")
    return x


def check_floating(x: torch.Tensor, name: str) -> torch.Tensor:
    if not x.is_floating_point():
        raise UserError(f"{name} must have a floating dtype, got {x.dtype}")
    return x


def check_same_length(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.shape[0] != b.shape[0]:
        raise UserError(
            f"{name_a} and {name_b} must have the same length, got {a.shape[0]} and {b.shape[0]}"
        )


def check_same_device(**tensors: torch.Tensor) -> None:
    devices = {n: t.device for n, t in tensors.items()}
    if len(set(devices.values())) > 1:
        listing = ", ".join(f"{n} on {d}" for n, d in devices.items())
        raise UserError(f"all inputs must be on one device, got {listing}")


def check_values(checks: Sequence[tuple[torch.Tensor, str]]) -> None:
    """Raise :class:`~mag_mmt.errors.UserError` (a ``ValueError``) with the message of the first failed check.

    ``checks`` pairs a 0-d boolean tensor (True = fine) with its error message. All conditions
    are read back in a single host transfer. Skipped while compiling.
    """
    if not checks or is_compiling():
        return
    flags = torch.stack([c.reshape(()) for c, _ in checks]).tolist()
    for ok, (_, message) in zip(flags, checks):
        if not ok:
            raise UserError(message)
