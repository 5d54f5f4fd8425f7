"""Drop-in adapters that bring MAG and MMT into the training loops of other repositories.

Each submodule turns its repository's row layout into the library's batch convention
``(features, labels, modalities)`` (docs/method.md#task-and-batch-convention), checks it,
and calls the MMT core unchanged; the criterion keeps the call signature and return type of
the one it replaces:

* :mod:`mag_mmt.adapters.agw` -- AGW (mangye16/Cross-Modal-Re-ID-baseline):
  ``agw.MMTCriterion(**mmt_kwargs)(feat, labels) -> (loss, correct)`` for ``TripletLoss_WRT``;
  rows ``[visible | thermal]``.
* :mod:`mag_mmt.adapters.caj` -- CAJ (same repo, ``ICCV21_CAJ/``):
  ``caj.MMTCriterion()(feat, labels) -> (loss, correct)`` for ``TripletLoss_ADP``; rows
  ``[visible view 0 | visible view 1 | thermal]``; ``caj.augment_caj_batch`` applies MAG.
* :mod:`mag_mmt.adapters.tslfn` -- TSLFN (98zyx/Hetero-center-loss-for-cross-modality-person-re-id):
  ``tslfn.MMTCriterion()(feat_visible, feat_thermal, label_visible, label_thermal) -> loss``
  for ``hetero_loss`` (one part).

The step-by-step edits of each ``train.py`` are in ``examples/adapters/<repo>.md``.

Example:
    >>> import torch
    >>> from mag_mmt.adapters import layout_modalities
    >>> layout_modalities(6, (0, 0, 1))
    tensor([0, 0, 0, 0, 1, 1])
"""

from __future__ import annotations

import importlib
from typing import Any

from mag_mmt.adapters._layout import (
    AGW_LAYOUT,
    CAJ_LAYOUT,
    block_size,
    check_layout,
    layout_batch,
    layout_modalities,
)

__all__ = [
    "agw",
    "caj",
    "tslfn",
    "AGW_LAYOUT",
    "CAJ_LAYOUT",
    "block_size",
    "check_layout",
    "layout_batch",
    "layout_modalities",
]

_SUBMODULES = ("agw", "caj", "tslfn")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f"mag_mmt.adapters.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'mag_mmt.adapters' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
