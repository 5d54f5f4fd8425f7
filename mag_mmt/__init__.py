"""mag-mmt: modality augmentation (MAG) and the multi-masking triplet loss (MMT) for
visible-infrared cross-modality person re-identification.

Quick start::

    from mag_mmt import ModalityAugment, MultiMaskingTripletLoss

    aug = ModalityAugment(p=0.5)
    criterion = MultiMaskingTripletLoss(margin=0.3)
    visible, thermal = aug(visible, thermal)           # (B, 3, H, W) each, same identities
    feats = model(visible, thermal)                     # (2B, D): visible rows, then thermal
    loss = criterion(feats, labels, modalities)         # modalities: 0 visible, 1 thermal

Batch convention (docs/method.md#task-and-batch-convention): ``modalities`` holds 0 for
visible and 1 for thermal/infrared. Names are imported lazily so ``import mag_mmt`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0.dev0"

VISIBLE = 0
THERMAL = 1

# public name -> module that defines it
_EXPORTS = {
    "MultiMaskingTripletLoss": "mag_mmt.losses",
    "BatchHardTripletLoss": "mag_mmt.losses",
    "WeightedRegularizedTripletLoss": "mag_mmt.losses",
    "ModalityAugment": "mag_mmt.augment",
    "StackedModalityAugment": "mag_mmt.augment",
    "ModalityAugmentV2": "mag_mmt.augment_v2",
    "CrossModalityIdentitySampler": "mag_mmt.data.sampler",
    "make_synthetic": "mag_mmt.data.synthetic",
    "build_model": "mag_mmt.models",
    "rank_metrics": "mag_mmt.evaluation",
}

__all__ = ["VISIBLE", "THERMAL", "__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mag_mmt' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
