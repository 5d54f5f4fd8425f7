"""mag-mmt: modality augmentation (MAG) and the multi-masking triplet loss (MMT) for
visible-infrared cross-modality person re-identification.

Quick start::

    from mag_mmt import ModalityAugment, MultiMaskingTripletLoss

    aug = ModalityAugment(p=0.5)
    criterion = MultiMaskingTripletLoss(margin=0.3)
    visible, thermal = aug(visible, thermal)           # (B, 3, H, W) each, same identities
    feats = model(visible, thermal)                     # (2B, D): visible rows, then thermal
    loss = criterion(feats, labels, modalities)         # modalities: 0 visible, 1 thermal

Batch convention (:mod:`mag_mmt.modalities`, docs/method.md#task-and-batch-convention):
``modalities`` holds 0 (:data:`VISIBLE`) and 1 (:data:`THERMAL`). The tensor functions the
modules wrap are in :mod:`mag_mmt.functional`. Names are imported lazily, so ``import mag_mmt``
stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from mag_mmt.modalities import THERMAL, VISIBLE

__version__ = "0.1.0.dev0"

# public name -> module that defines it (the top-level API, listed once)
_EXPORTS = {
    "ModalityAugment": "mag_mmt.augment",
    "StackedModalityAugment": "mag_mmt.augment_kornia",
    "ModalityAugmentV2": "mag_mmt.augment_v2",
    "MultiMaskingTripletLoss": "mag_mmt.losses",
    "BatchHardTripletLoss": "mag_mmt.losses",
    "WeightedRegularizedTripletLoss": "mag_mmt.losses",
    "CrossModalityMemory": "mag_mmt.memory",
    "CrossModalityIdentitySampler": "mag_mmt.data.sampler",
    "make_synthetic": "mag_mmt.data.synthetic",
    "build_model": "mag_mmt.models",
    "rank_metrics": "mag_mmt.evaluation",
}
# subpackages reachable as attributes after ``import mag_mmt``
_SUBMODULES = ("functional",)

__all__ = ["VISIBLE", "THERMAL", "__version__", *_SUBMODULES, *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        value = importlib.import_module(f"mag_mmt.{name}")
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module 'mag_mmt' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
