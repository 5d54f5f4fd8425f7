"""Pooling, BNNeck and classifier, and the dual-path skeleton shared by every reference model.

A dual-path model is a list of *units* (for both reference models: an input stem and four
stages) that turn a ``(B, 3, H, W)`` image batch into a ``(B, C, h, w)`` feature map. The
units before the *share point* are modality-specific (one deep copy per modality); the
units after it are shared by both modalities. After the last unit come one pooling layer,
one BNNeck and one identity classifier, always shared.

Share points follow the paper (appendix A.3, "learn cross-modality features from stages
1, 2, 3 or 4 in sequence"; docs/method.md#dual-path-model-and-share-points):

======  ==========================  ======================  ==========================
name    modality-specific units     shared units            ``num_specific`` (int form)
======  ==========================  ======================  ==========================
``F1``  none                        stem, stages 1-4        0
``F2``  stem, stage 1               stages 2-4              2
``F3``  stem, stages 1-2            stages 3-4              3  (default, paper's best)
``F4``  stem, stages 1-3            stage 4                 4
``F5``  stem, stages 1-4            none (only the head)    5
======  ==========================  ======================  ==========================

An ``int`` share point is the number of modality-specific leading units, so ``1`` (only
the stem specific, the split of AGW's two-stream ResNet) is reachable too.

The forward contract is AGW's (``mangye16/Cross-Modal-Re-ID-baseline``)::

    model(x1, x2, modal=0)   # x1 visible (B1, 3, H, W), x2 thermal (B2, 3, H, W)
    model(x1, None, modal=1) # visible path only
    model(None, x2, modal=2) # thermal path only

In training mode it returns ``(feat, logits)``: ``feat`` (B, D) are the pooled features
*before* the BNNeck (the ones the triplet loss uses, as in AGW; rows: visible then thermal),
``logits`` (B, num_classes) come from the BNNeck feature. In eval mode it returns the BNNeck
feature (B, D), *not* L2-normalised (AGW returns normalised features; normalise in the
evaluation if wanted). ``eval_feature="pool"`` returns the pooled feature instead.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_floating, check_tensor

SHARE_POINTS = {"F1": 0, "F2": 2, "F3": 3, "F4": 4, "F5": 5}
NUM_UNITS = 5  # stem + 4 stages


def parse_share_point(share_point: str | int, num_units: int = NUM_UNITS) -> int:
    """Number of modality-specific leading units for ``share_point``.

    ``"F1"``..``"F5"`` (case-insensitive) map as in the module table; an ``int`` is taken as
    the number of specific units directly and must lie in ``[0, num_units]``.

    Example::

        >>> parse_share_point("F3"), parse_share_point("f1"), parse_share_point(1)
        (3, 0, 1)
    """
    if isinstance(share_point, bool):
        raise ValueError(f"share_point must be 'F1'..'F5' or an int, got {share_point!r}")
    if isinstance(share_point, int):
        if not 0 <= share_point <= num_units:
            raise ValueError(
                f"share_point as an int is the number of modality-specific units and must lie "
                f"in [0, {num_units}], got {share_point}"
            )
        return share_point
    if isinstance(share_point, str) and share_point.upper() in SHARE_POINTS:
        return SHARE_POINTS[share_point.upper()]
    raise ValueError(
        f"share_point must be one of {sorted(SHARE_POINTS)} or an int in [0, {num_units}], "
        f"got {share_point!r}"
    )


def gem_pool(x: torch.Tensor, p: float = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """Generalised-mean pooling of a ``(B, C, h, w)`` map to ``(B, C)``.

    ``p = 1`` is plain average pooling (no clamping, so negative inputs such as LayerNorm
    outputs are fine); ``p > 1`` clamps at ``eps`` first, as GeM needs positive inputs
    (AGW uses ``p = 3`` after a ReLU).

    Example::

        >>> gem_pool(torch.ones(2, 4, 3, 3), p=3.0).shape
        torch.Size([2, 4])
    """
    if p == 1.0:
        return x.mean(dim=(-2, -1))
    return x.clamp(min=eps).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)


class GeMPool(nn.Module):
    """Module form of :func:`gem_pool` (``p=1``: average pooling)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        if p < 1.0:
            raise ValueError(f"GeM pooling power p must be >= 1, got {p}")
        self.p = float(p)
        self.eps = float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gem_pool(x, self.p, self.eps)

    def extra_repr(self) -> str:
        return f"p={self.p}, eps={self.eps}"


class BNNeckHead(nn.Module):
    """BNNeck (BatchNorm1d with a frozen zero bias) and a bias-free identity classifier.

    ``forward(feat)`` with ``feat`` (B, D) returns ``(bn_feat (B, D), logits (B, num_classes))``.

    Example::

        >>> head = BNNeckHead(16, num_classes=5)
        >>> bn, logits = head(torch.randn(4, 16))
        >>> bn.shape, logits.shape
        (torch.Size([4, 16]), torch.Size([4, 5]))
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.bottleneck = nn.BatchNorm1d(in_features)
        self.bottleneck.bias.requires_grad_(False)
        nn.init.ones_(self.bottleneck.weight)
        nn.init.zeros_(self.bottleneck.bias)
        self.classifier = nn.Linear(in_features, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bn_feat = self.bottleneck(feat)
        return bn_feat, self.classifier(bn_feat)


def _check_images(x: object, name: str) -> torch.Tensor:
    x = check_tensor(x, name, ndim=4)
    check_floating(x, name)
    if x.shape[1] != 3:
        raise ValueError(f"{name} must be (B, 3, H, W) images, got shape {tuple(x.shape)}")
    return x


class DualPathNet(nn.Module):
    """Dual-path backbone from ``units`` split at ``share_point``, plus pooling and head.

    Args:
        units: modules applied in order, each mapping a feature map to the next; the last
            must output ``(B, feature_dim, h, w)``. Specific units are deep-copied per modality;
            the given objects become the visible copy (or the shared ones).
        num_classes: identity classes of the classifier.
        feature_dim: channels of the last unit's output (D).
        share_point: see :func:`parse_share_point`.
        pool_p: GeM power (1 = average pooling).
        eval_feature: ``"bn"`` (default) or ``"pool"``: what eval-mode ``forward`` returns.
        input_size: if given, inputs of another spatial size are bilinearly resized to it.

    Attributes:
        visible, thermal: ``nn.ModuleList`` of the modality-specific units.
        shared: ``nn.ModuleList`` of the shared units.
        pool, head: pooling and :class:`BNNeckHead`.
    """

    def __init__(
        self,
        units: Sequence[nn.Module],
        num_classes: int,
        feature_dim: int,
        share_point: str | int = "F3",
        pool_p: float = 1.0,
        eval_feature: str = "bn",
        input_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        if eval_feature not in ("bn", "pool"):
            raise ValueError(f"eval_feature must be 'bn' or 'pool', got {eval_feature!r}")
        units = list(units)
        self.num_specific = parse_share_point(share_point, len(units))
        self.share_point = share_point
        specific = units[: self.num_specific]
        self.visible = nn.ModuleList(specific)
        self.thermal = nn.ModuleList(copy.deepcopy(m) for m in specific)
        self.shared = nn.ModuleList(units[self.num_specific :])
        self.pool = GeMPool(pool_p)
        self.head = BNNeckHead(feature_dim, num_classes)
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.eval_feature = eval_feature
        self.input_size = None if input_size is None else (int(input_size[0]), int(input_size[1]))

    # -- structure -----------------------------------------------------------------
    def path(self, modality: int) -> list[nn.Module]:
        """The units one modality's images go through (0 visible, 1 thermal), in order."""
        if modality not in (0, 1):
            raise ValueError(f"modality must be 0 (visible) or 1 (thermal), got {modality!r}")
        specific = self.visible if modality == 0 else self.thermal
        return [*specific, *self.shared]

    # -- forward -------------------------------------------------------------------
    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        return x

    @staticmethod
    def _run(units: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        for unit in units:
            x = unit(x)
        return x

    def forward_feature_map(
        self, x1: torch.Tensor | None, x2: torch.Tensor | None = None, modal: int = 0
    ) -> torch.Tensor:
        """The last unit's feature map before pooling, ``(B, D, h, w)``.

        ``modal=0``: ``x1`` visible ``(B1, 3, H, W)`` and ``x2`` thermal ``(B2, 3, H, W)``,
        rows ``B1`` visible then ``B2`` thermal; ``modal=1``: ``x1`` only (visible path);
        ``modal=2``: ``x2`` only (thermal path). MMGL pre-training reads patch features here.
        """
        if modal not in (0, 1, 2):
            raise ValueError(f"modal must be 0 (both), 1 (visible) or 2 (thermal), got {modal!r}")
        if modal == 0:
            x1 = self._prepare(_check_images(x1, "x1 (visible)"))
            x2 = self._prepare(_check_images(x2, "x2 (thermal)"))
            if x1.shape[1:] != x2.shape[1:]:
                raise ValueError(
                    "x1 and x2 must have the same image size, got "
                    f"{tuple(x1.shape[1:])} and {tuple(x2.shape[1:])}"
                )
            x = torch.cat([self._run(self.visible, x1), self._run(self.thermal, x2)], dim=0)
        elif modal == 1:
            x = self._run(self.visible, self._prepare(_check_images(x1, "x1 (visible)")))
        else:
            x = self._run(self.thermal, self._prepare(_check_images(x2, "x2 (thermal)")))
        return self._run(self.shared, x)

    def forward_features(
        self, x1: torch.Tensor | None, x2: torch.Tensor | None = None, modal: int = 0
    ) -> torch.Tensor:
        """Pooled features (before the BNNeck), ``(B, D)``: :meth:`forward_feature_map`, pooled."""
        return self.pool(self.forward_feature_map(x1, x2, modal))

    def forward_head(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``feat`` (B, D) -> ``(bn_feat (B, D), logits (B, num_classes))``."""
        check_tensor(feat, "feat", ndim=2)
        return self.head(feat)

    def forward(
        self, x1: torch.Tensor | None, x2: torch.Tensor | None = None, modal: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
        """Training: ``(feat, logits)``; eval: the BNNeck feature (or pooled, see class doc)."""
        feat = self.forward_features(x1, x2, modal)
        if self.training:
            _, logits = self.head(feat)
            return feat, logits
        if self.eval_feature == "pool":
            return feat
        return self.head.bottleneck(feat)
