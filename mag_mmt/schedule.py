"""Learning-rate schedules: warm-up then x0.1 at every milestone (training), cosine (MMGL).

``mag-mmt train`` (:func:`mag_mmt.training.lr_at`) and a loop of your own
(``examples/dual_path_swin.py``) use the same function, :func:`scheduled_lr`;
``mag-mmt pretrain`` uses :func:`cosine_lr`.

Example:
    >>> from mag_mmt.schedule import scheduled_lr
    >>> [scheduled_lr(0.01, epoch, warmup_epochs=2, warmup_mode="staircase", milestones=(3,))
    ...  for epoch in range(4)]
    [0.005, 0.01, 0.01, 0.001]
"""

from __future__ import annotations

import math
from typing import Sequence

from .errors import UserError

__all__ = ["WARMUP_MODES", "scheduled_lr", "cosine_lr"]

#: ``"linear"``: per step from 0.1 lr to lr; ``"staircase"``: AGW's ``lr * (epoch + 1) / warmup`` per epoch
WARMUP_MODES = ("linear", "staircase")


def scheduled_lr(
    lr: float,
    epoch: int,
    step_in_epoch: int = 0,
    steps_per_epoch: int = 1,
    *,
    warmup_epochs: int = 0,
    warmup_mode: str = "linear",
    milestones: Sequence[int] = (),
) -> float:
    """The learning rate at step ``step_in_epoch`` of ``epoch`` (both from 0) for base rate ``lr``.

    Warm-up over the first ``warmup_epochs``: ``"staircase"`` (AGW's ``train.py``) multiplies by
    ``(epoch + 1) / warmup_epochs``; ``"linear"`` rises per step from ``0.1 * lr`` to ``lr``.
    Then x0.1 for every milestone ``m`` with ``epoch >= m``. ``lr=1.0`` gives the factor (for
    ``torch.optim.lr_scheduler.LambdaLR``).
    """
    if warmup_mode not in WARMUP_MODES:
        raise UserError(f"warmup_mode must be one of {WARMUP_MODES}, got {warmup_mode!r}")
    if warmup_mode == "staircase" and epoch < warmup_epochs:
        lr *= (epoch + 1) / warmup_epochs
    elif warmup_epochs > 0 and epoch < warmup_epochs:
        progress = (epoch * steps_per_epoch + step_in_epoch + 1) / (warmup_epochs * steps_per_epoch)
        lr *= 0.1 + 0.9 * min(1.0, progress)
    lr *= 0.1 ** sum(epoch >= m for m in milestones)
    return lr


def cosine_lr(lr: float, step: int, total: int) -> float:
    """Cosine decay from ``lr`` at step 0 to 0 at step ``total`` (and after).

    >>> cosine_lr(0.01, 0, 100), cosine_lr(0.01, 50, 100), cosine_lr(0.01, 100, 100)
    (0.01, 0.005, 0.0)
    """
    return lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
