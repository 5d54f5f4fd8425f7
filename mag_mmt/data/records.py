"""The record types every reader produces and every protocol, sampler and CLI consumes.

A dataset is a list of :class:`Sample` records per split. Readers of real datasets
(SYSU-MM01, RegDB, manifest CSV) and the synthetic generator all return a
:class:`ReIDData`, so the sampler, the evaluation protocols and the CLI never need to know
where the images come from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

VISIBLE = 0
THERMAL = 1
MODALITY_NAMES = {VISIBLE: "visible", THERMAL: "thermal"}


@dataclass(frozen=True)
class Sample:
    """One image.

    Attributes:
        path: image file path, or a key understood by the dataset's ``loader``
            (e.g. ``"synthetic://..."``).
        identity: person identity. In ``train`` splits readers remap identities to
            ``0..C-1`` (classifier targets); in ``query``/``gallery`` splits it is the
            dataset's own identity number, so results can be traced back to files.
        camera: the dataset's own camera number (SYSU-MM01: 1..6).
        modality: 0 = visible, 1 = thermal/infrared.
    """

    path: str
    identity: int
    camera: int
    modality: int


@dataclass
class ReIDData:
    """The splits of one dataset (or one trial of it).

    ``gallery`` is the gallery *pool*: protocols that sample a gallery per trial
    (SYSU-MM01 single-/multi-shot) draw from it. ``loader`` turns a sample into a
    ``uint8`` tensor ``(3, H, W)``; ``None`` means "read ``sample.path`` from disk".
    """

    name: str
    train: list[Sample]
    query: list[Sample]
    gallery: list[Sample]
    loader: Callable[[Sample], torch.Tensor] | None = None
    meta: dict = field(default_factory=dict)

    @property
    def num_train_identities(self) -> int:
        return len({s.identity for s in self.train})


def as_arrays(samples: Sequence[Sample]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(identities, cameras, modalities)`` of ``samples`` as int64 tensors."""
    ids = torch.tensor([s.identity for s in samples], dtype=torch.long)
    cams = torch.tensor([s.camera for s in samples], dtype=torch.long)
    mods = torch.tensor([s.modality for s in samples], dtype=torch.long)
    return ids, cams, mods
