"""The one device choice: which ``torch.device`` a run uses, and whether this machine has it.

Training, evaluation, MMGL pre-training and checkpoint loading all ask here, so ``--device``
means the same everywhere: ``None`` is CUDA when available, else the CPU; a CUDA device on a
machine without CUDA is a :class:`~mag_mmt.errors.UserError`.

>>> from mag_mmt.device import resolve_device
>>> resolve_device("cpu")
device(type='cpu')
"""

from __future__ import annotations

import torch

from .errors import UserError

__all__ = ["device_available", "resolve_device"]


def device_available(device: torch.device) -> bool:
    """Whether this machine can put tensors on ``device`` (only CUDA may be missing here).

    >>> device_available(torch.device("cpu"))
    True
    """
    return device.type != "cuda" or torch.cuda.is_available()


def resolve_device(name: str | torch.device | None = None, *, local_rank: int | None = None) -> torch.device:
    """The device of a run: ``name`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``), or CUDA when available
    and the CPU otherwise (``None``). Under ``torchrun`` pass ``local_rank``: with CUDA each process
    then takes ``cuda:<local_rank>`` whatever ``name`` says.

    Raises:
        UserError: ``name`` asks for CUDA on a machine without it.
    """
    if local_rank is not None and torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if not device_available(device):
        raise UserError(f"device {str(name)!r} asked for, but CUDA is not available")
    return device
