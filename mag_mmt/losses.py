"""The triplet losses as ``nn.Module`` classes over :mod:`mag_mmt.functional.triplet`.

* :class:`MultiMaskingTripletLoss` -- MMT (paper Eq. 1; formula in :mod:`mag_mmt.functional.triplet`)
* :class:`BatchHardTripletLoss` -- the classic batch-hard triplet loss (MMT with "any" masks)
* :class:`WeightedRegularizedTripletLoss` -- AGW's WRT
* :class:`AdaptiveWeightedTripletLoss` -- CAJ's ADP

Batch convention (:mod:`mag_mmt.modalities`): ``embeddings`` ``(N, D)``, ``labels`` ``(N,)``,
``modalities`` ``(N,)`` with 0 visible, 1 thermal; an optional reference set ``ref_emb``,
``ref_labels``, ``ref_modalities`` (pytorch-metric-learning's names).

Example:
    >>> import torch
    >>> from mag_mmt import MultiMaskingTripletLoss
    >>> x = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
    >>> MultiMaskingTripletLoss(margin=10.5)(x, torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1]))
    tensor(1.5000)
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from mag_mmt import _validation as V
from mag_mmt.functional.mining import AnchorChoice, ModalityChoice
from mag_mmt.functional.triplet import (
    MMTOutput,
    Reduction,
    _check_options,
    _check_weights,
    adaptive_weighted_triplet_loss,
    concat_modalities,
    multi_masking_triplet_loss,
    weighted_regularized_triplet_loss,
)

__all__ = [
    "MultiMaskingTripletLoss",
    "BatchHardTripletLoss",
    "WeightedRegularizedTripletLoss",
    "AdaptiveWeightedTripletLoss",
]


class MultiMaskingTripletLoss(nn.Module):
    """Module form of :func:`mag_mmt.functional.multi_masking_triplet_loss` (same arguments).

    ``forward(embeddings, labels, modalities, ref_emb=None, ref_labels=None,
    ref_modalities=None)`` returns the loss; :meth:`forward_pair` takes the two-tensor layout.
    After each call ``last_parts`` holds the detached :class:`MMTOutput` (MMAN, MMAP, number of
    valid anchors) for logging, still on the device (no sync until you read it).

    Example:
        >>> import torch
        >>> from mag_mmt import MultiMaskingTripletLoss
        >>> criterion = MultiMaskingTripletLoss(margin=0.3)
        >>> x = torch.randn(8, 16, requires_grad=True)
        >>> labels = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])
        >>> modalities = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
        >>> loss = criterion(x, labels, modalities)
        >>> loss.backward()
        >>> int(criterion.last_parts.num_valid)
        8
    """

    def __init__(
        self,
        margin: float = 0.3,
        pos_margin: float = 0.1,
        pos_weight: float = 1.0,
        mman_weight: float = 1.0,
        positive_modality: ModalityChoice = "cross",
        negative_modality: ModalityChoice = "cross",
        anchors: AnchorChoice = "both",
        distance: Literal["euclidean", "sqeuclidean", "cosine"] = "euclidean",
        normalize: bool = False,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
        cross_rank: bool = False,
        scale_by_world_size: bool = True,
        validate: bool = True,
    ) -> None:
        super().__init__()
        _check_options(positive_modality, negative_modality, anchors, distance, reduction, chunk_size)
        _check_weights(mman_weight=mman_weight, pos_weight=pos_weight)
        self.margin = float(margin)
        self.pos_margin = float(pos_margin)
        self.pos_weight = float(pos_weight)
        self.mman_weight = float(mman_weight)
        self.positive_modality = positive_modality
        self.negative_modality = negative_modality
        self.anchors = anchors
        self.distance = distance
        self.normalize = normalize
        self.reduction = reduction
        self.chunk_size = chunk_size
        self.cross_rank = cross_rank
        self.scale_by_world_size = scale_by_world_size
        self.validate = validate
        self.last_parts: MMTOutput | None = None

    def _options(self) -> dict:
        return dict(
            margin=self.margin, pos_margin=self.pos_margin, pos_weight=self.pos_weight,
            mman_weight=self.mman_weight,
            positive_modality=self.positive_modality, negative_modality=self.negative_modality,
            anchors=self.anchors, distance=self.distance, normalize=self.normalize,
            reduction=self.reduction, chunk_size=self.chunk_size, cross_rank=self.cross_rank,
            scale_by_world_size=self.scale_by_world_size, validate=self.validate,
        )

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        modalities: torch.Tensor,
        ref_emb: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
        ref_modalities: torch.Tensor | None = None,
    ) -> torch.Tensor:
        out = multi_masking_triplet_loss(
            embeddings, labels, modalities, ref_emb=ref_emb, ref_labels=ref_labels,
            ref_modalities=ref_modalities, return_parts=True, **self._options(),
        )
        assert isinstance(out, MMTOutput)
        self.last_parts = MMTOutput(*(t.detach() for t in out))
        return out.loss

    def forward_pair(
        self,
        visible_emb: torch.Tensor,
        thermal_emb: torch.Tensor,
        visible_labels: torch.Tensor,
        thermal_labels: torch.Tensor,
    ) -> torch.Tensor:
        """Loss for the two-tensor layout: ``(B_v, D)``, ``(B_t, D)``, ``(B_v,)``, ``(B_t,)``."""
        return self(*concat_modalities(visible_emb, thermal_emb, visible_labels, thermal_labels))

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self._options().items())


class BatchHardTripletLoss(MultiMaskingTripletLoss):
    """Classic batch-hard triplet loss: :class:`MultiMaskingTripletLoss` with
    ``positive_modality = negative_modality = "any"`` and ``pos_weight = 0``. ``modalities``
    may be omitted.

    Example:
        >>> import torch
        >>> from mag_mmt import BatchHardTripletLoss
        >>> x = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
        >>> BatchHardTripletLoss(margin=1.0)(x, torch.tensor([0, 0, 1, 1]))
        tensor(0.)
    """

    def __init__(
        self,
        margin: float = 0.3,
        anchors: AnchorChoice = "both",
        distance: Literal["euclidean", "sqeuclidean", "cosine"] = "euclidean",
        normalize: bool = False,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
        cross_rank: bool = False,
        scale_by_world_size: bool = True,
        validate: bool = True,
    ) -> None:
        super().__init__(
            margin=margin, pos_margin=0.0, pos_weight=0.0, positive_modality="any",
            negative_modality="any", anchors=anchors, distance=distance, normalize=normalize,
            reduction=reduction, chunk_size=chunk_size, cross_rank=cross_rank,
            scale_by_world_size=scale_by_world_size, validate=validate,
        )

    def forward(  # type: ignore[override]
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        modalities: torch.Tensor | None = None,
        ref_emb: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
        ref_modalities: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if modalities is None:
            V.check_tensor(labels, "labels", 1)
            modalities = torch.zeros_like(labels, dtype=torch.int64)
        if ref_emb is not None and ref_modalities is None and ref_labels is not None:
            V.check_tensor(ref_labels, "ref_labels", 1)
            ref_modalities = torch.zeros_like(ref_labels, dtype=torch.int64)
        return super().forward(embeddings, labels, modalities, ref_emb, ref_labels, ref_modalities)


class WeightedRegularizedTripletLoss(nn.Module):
    """Module form of :func:`mag_mmt.functional.weighted_regularized_triplet_loss` (AGW's WRT).

    Example:
        >>> import torch
        >>> from mag_mmt.losses import WeightedRegularizedTripletLoss
        >>> x = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
        >>> round(float(WeightedRegularizedTripletLoss()(x, torch.tensor([0, 0, 1, 1]))), 4)
        0.0002
    """

    def __init__(
        self,
        positive_modality: ModalityChoice = "any",
        negative_modality: ModalityChoice = "any",
        anchors: AnchorChoice = "both",
        distance: Literal["euclidean", "sqeuclidean", "cosine"] = "euclidean",
        normalize: bool = False,
        reduction: Reduction = "mean",
        validate: bool = True,
    ) -> None:
        super().__init__()
        _check_options(positive_modality, negative_modality, anchors, distance, reduction, None)
        self.options = dict(
            positive_modality=positive_modality, negative_modality=negative_modality,
            anchors=anchors, distance=distance, normalize=normalize, reduction=reduction,
            validate=validate,
        )

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor, modalities: torch.Tensor | None = None
    ) -> torch.Tensor:
        return weighted_regularized_triplet_loss(embeddings, labels, modalities, **self.options)


class AdaptiveWeightedTripletLoss(nn.Module):
    """Module form of :func:`mag_mmt.functional.adaptive_weighted_triplet_loss` (CAJ's ADP; defaults: CAJ's
    ``main.sh``, ``--alpha 1 --gamma 1 --square 1``).

    Example:
        >>> import torch
        >>> from mag_mmt.losses import AdaptiveWeightedTripletLoss
        >>> AdaptiveWeightedTripletLoss()(torch.randn(8, 4), torch.tensor([0, 0, 1, 1] * 2)).shape
        torch.Size([])
    """

    def __init__(self, alpha: float = 1.0, gamma: float = 1.0, square: bool = True, validate: bool = True) -> None:
        super().__init__()
        self.alpha, self.gamma, self.square, self.validate = float(alpha), float(gamma), bool(square), validate

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor,
                modalities: torch.Tensor | None = None) -> torch.Tensor:
        return adaptive_weighted_triplet_loss(embeddings, labels, modalities, alpha=self.alpha, gamma=self.gamma,
                                              square=self.square, validate=self.validate)
