"""Reference models: the paper's dual-path Swin, AGW's two-path ResNet-50 and a small CPU CNN,
one contract for all.

All follow AGW's forward contract ``model(x1, x2, modal=0)`` (see
:mod:`mag_mmt.models.heads`) and a timm-like split ``forward_features`` / ``forward_head``.
:func:`build_model` builds one by name for the CLI.

Example::

    >>> from mag_mmt.models import build_model
    >>> model = build_model("small-cnn", num_classes=8, share_point="F3")
    >>> feat, logits = model(torch.randn(2, 3, 64, 32), torch.randn(2, 3, 64, 32))
    >>> feat.shape, logits.shape
    (torch.Size([4, 256]), torch.Size([4, 8]))
"""

from __future__ import annotations

from typing import Any, Callable

import torch  # noqa: F401  (used in the doctest)

from .dual_resnet import AGW_NON_LOCAL, DualResNet50, NonLocal
from .dual_swin import SWIN_T_CONFIG, SWIN_TINY_TEST_CONFIG, DualPathSwin, load_swin_state_dict
from .heads import SHARE_POINTS, BNNeckHead, DualPathNet, GeMPool, gem_pool, parse_share_point
from .small_cnn import SmallCNN
from .weights import SwinLoadReport, convert_swin_state_dict, detect_swin_layout

MODELS: dict[str, Callable[..., DualPathNet]] = {
    "dual-swin": DualPathSwin,
    "dual-resnet50": DualResNet50,
    "small-cnn": SmallCNN,
}


def build_model(name: str, num_classes: int, **kwargs: Any) -> DualPathNet:
    """Build a registered model: ``"dual-swin"``, ``"dual-resnet50"`` (AGW's) or ``"small-cnn"``.

    ``kwargs`` go to the model's constructor (``share_point``, ``pretrained_path``,
    ``img_size``, ...). Raises ``ValueError`` for an unknown name.
    """
    try:
        factory = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}") from None
    return factory(num_classes, **kwargs)


__all__ = [
    "AGW_NON_LOCAL",
    "MODELS",
    "SHARE_POINTS",
    "SWIN_T_CONFIG",
    "SWIN_TINY_TEST_CONFIG",
    "BNNeckHead",
    "DualPathNet",
    "DualPathSwin",
    "DualResNet50",
    "GeMPool",
    "NonLocal",
    "SmallCNN",
    "SwinLoadReport",
    "build_model",
    "convert_swin_state_dict",
    "detect_swin_layout",
    "gem_pool",
    "load_swin_state_dict",
    "parse_share_point",
]
