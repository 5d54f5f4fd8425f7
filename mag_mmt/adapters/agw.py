"""Drop-in MMT criterion for AGW (mangye16/Cross-Modal-Re-ID-baseline, repository root).

AGW's ``train.py`` builds one batch of two equal blocks and calls its triplet criterion::

    labels = torch.cat((label1, label2), 0)          # B visible labels, then B thermal
    feat, out0, = net(input1, input2)                # feat: (2B, 2048) x_pool, rows [V | T]
    loss_tri, batch_acc = criterion_tri(feat, labels)   # TripletLoss_WRT -> (loss, int)

:class:`MMTCriterion` takes the place of ``TripletLoss_WRT()`` with the same call and return
types: ``criterion_tri(feat, labels) -> (loss, correct)``. It reads the modality of each row
from the layout (first half visible, second half thermal), checks it, and returns exactly
:func:`mag_mmt.functional.multi_masking_triplet_loss` on ``(feat, labels, modalities)``.

``correct`` is the number AGW's ``loss.py`` computes on the same features, reproduced
exactly (:func:`triplet_correct`): the rows (anchors, any modality) whose softmax-weighted
*closest negative* is at least as far as their softmax-weighted *furthest positive*, over
the whole batch with the anchor itself among its positives, Euclidean distance on the
features as given. So the ``Accu`` that ``train.py`` prints is computed as in baseline runs
(including the repo's collapse of the count to 0 once distances are large, see there). It is a Python ``int`` like AGW's (one host read); ``correct_as_tensor=True``
returns the 0-d tensor instead (``train.py``'s arithmetic and ``{:.2f}`` formatting accept it)
so a step needs no sync for it. ``correct="mmt"`` counts instead the valid MMT anchors whose
hardest cross-modality negative is at least as far as their hardest cross-modality positive.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from mag_mmt.adapters._layout import AGW_LAYOUT, layout_batch
from mag_mmt.functional.distances import pairwise_distance
from mag_mmt.functional.mining import anchor_mask, masked_hard_mining, soft_pick
from mag_mmt.losses import MultiMaskingTripletLoss

__all__ = ["agw_batch", "triplet_correct", "mmt_correct", "MMTCriterion"]

CorrectKind = Literal["repo", "mmt"]


def agw_batch(
    feat: torch.Tensor, labels: torch.Tensor, *, paired: bool = True, validate: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """AGW's ``(feat, labels)`` -> ``(features, labels, modalities)``.

    Args:
        feat: ``(2B, D)``, rows ``[visible (B) | thermal (B)]`` as ``embed_net`` returns them.
        labels: ``(2B,)`` ``torch.cat((label1, label2))``.
        paired: AGW's ``IdentitySampler`` (``utils.py``) draws the visible and the thermal image
            of row ``i`` from the same identity, so ``labels[:B] == labels[B:]``; with
            ``validate`` this is checked (it catches a wrong row order or a CAJ batch). Set
            ``False`` for a sampler that does not pair rows.
        validate: run that value check (one host read).

    Returns:
        the features and labels unchanged and the ``(2B,)`` int64 modality vector.

    Example:
        >>> import torch
        >>> agw_batch(torch.randn(4, 8), torch.tensor([7, 9, 7, 9]))[2]
        tensor([0, 0, 1, 1])
    """
    return layout_batch(
        feat, labels, AGW_LAYOUT, same_label_blocks=[(0, 1)] if paired else [],
        validate=validate, repo="AGW",
        hint="is feat in AGW's row order (visible rows, then thermal rows)? Pass paired=False "
        "if your sampler does not pair identities row by row",
    )


@torch.no_grad()
def triplet_correct(features: torch.Tensor, labels: torch.Tensor, *, alpha: float = 1.0) -> torch.Tensor:
    """AGW's / CAJ's triplet "accuracy" count, reproduced exactly, as a 0-d int64 tensor.

    The arithmetic of ``TripletLoss_WRT`` (AGW, ``alpha=1``) and ``TripletLoss_ADP`` (CAJ,
    ``alpha=--alpha``) in the repos' ``loss.py``, in the same order, so the count is the one
    the repo prints on the same features. For every row ``a``, with Euclidean distances
    ``d = sqrt(max(|x|^2 + |y|^2 - 2 x.y, 1e-12))`` and the anchor itself among its positives::

        far_pos(a)  = sum_p w_p d(a, p),  w_p = e^(alpha d(a,p) - m) / (sum_p' e^(alpha d(a,p') - m) + 1e-6)
        near_neg(a) = sum_n w_n d(a, n),  w_n = e^(-alpha d(a,n)) / (sum_n' e^(-alpha d(a,n')) + 1e-6)
        correct     = #{a : near_neg(a) >= far_pos(a)}

    with ``m = alpha * max_p d(a, p)``. The ``1e-6`` in the denominators is the repos'
    guard against an empty mask; it is not negligible for the negatives: once every
    negative of a row is farther than about ``(14 + ln(#negatives)) / alpha``
    (``e^-14 ~ 1e-6``), the weights sum to far less than 1 and ``near_neg`` shrinks towards 0;
    a few units further it is below ``far_pos`` and the row is not counted. Unnormalised 2048-d
    features often sit at distances of 30-40, where the repo's count (and so this one) is 0
    whatever the ranking; ``MMTCriterion(correct="mmt")`` counts hard triplets instead. A row
    without negatives has ``near_neg = 0``. No autograd, no host sync.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
        >>> int(triplet_correct(x, torch.tensor([0, 0, 1, 1])))
        4
        >>> int(triplet_correct(40 * x, torch.tensor([0, 0, 1, 1])))  # negatives ~400 away
        0
    """
    x = features.detach()
    sq = x.pow(2).sum(dim=1)
    dist = torch.addmm(sq.unsqueeze(1) + sq.unsqueeze(0), x, x.t(), alpha=-2).clamp(min=1e-12).sqrt()
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    # the repos' masked softmax: the 1e-6 guard in the normaliser (soft_weights with eps)
    far_pos = soft_pick(dist, alpha * dist, same, eps=1e-6)
    near_neg = soft_pick(dist, -alpha * dist, ~same, eps=1e-6)
    return (near_neg >= far_pos).sum()


@torch.no_grad()
def mmt_correct(
    features: torch.Tensor, labels: torch.Tensor, modalities: torch.Tensor, criterion: MultiMaskingTripletLoss
) -> torch.Tensor:
    """Valid MMT anchors whose hardest negative is at least as far as their hardest positive,
    mined with ``criterion``'s masks and distance, as a 0-d int64 tensor (no host sync)."""
    x = F.normalize(features.detach().float(), dim=1) if criterion.normalize else features.detach()
    dist = pairwise_distance(x, distance=criterion.distance)  # type: ignore[arg-type]
    mined = masked_hard_mining(
        dist, labels, modalities, labels, modalities,
        positive_modality=criterion.positive_modality,  # type: ignore[arg-type]
        negative_modality=criterion.negative_modality,  # type: ignore[arg-type]
        anchor_index=torch.arange(labels.shape[0], device=labels.device),
    )
    rows = torch.arange(labels.shape[0], device=labels.device)
    ok = dist[rows, mined.hard_negative] >= dist[rows, mined.hard_positive]
    valid = mined.has_positive & mined.has_negative
    selected = anchor_mask(modalities, criterion.anchors)  # type: ignore[arg-type]
    if selected is not None:
        valid = valid & selected
    return (ok & valid).sum()


class _TripletCriterion(nn.Module):
    """Shared body of the AGW and CAJ criteria: layout -> MMT loss, plus the repo's ``correct``."""

    def __init__(
        self,
        *,
        paired: bool = True,
        validate: bool = True,
        correct: CorrectKind = "repo",
        correct_as_tensor: bool = False,
        correct_alpha: float = 1.0,
        **mmt_kwargs: Any,
    ) -> None:
        super().__init__()
        if correct not in ("repo", "mmt"):
            raise ValueError(f"correct must be 'repo' or 'mmt', got {correct!r}")
        self.paired = bool(paired)
        self.validate = bool(validate)
        self.correct = correct
        self.correct_as_tensor = bool(correct_as_tensor)
        self.correct_alpha = float(correct_alpha)
        self.mmt = MultiMaskingTripletLoss(validate=validate, **mmt_kwargs)

    def build_batch(self, feat: torch.Tensor, labels: torch.Tensor):
        raise NotImplementedError

    def forward(
        self, feat: torch.Tensor, labels: torch.Tensor, normalize_feature: bool = False
    ) -> tuple[torch.Tensor, int | torch.Tensor]:
        if normalize_feature:  # the repos' keyword: L2-normalise rows before everything
            feat = F.normalize(feat, dim=1, eps=1e-12)
        features, labels, modalities = self.build_batch(feat, labels)
        loss = self.mmt(features, labels, modalities)
        if self.correct == "repo":
            count = triplet_correct(features, labels, alpha=self.correct_alpha)
        else:
            count = mmt_correct(features, labels, modalities, self.mmt)
        return loss, (count if self.correct_as_tensor else int(count.item()))

    def extra_repr(self) -> str:
        return (
            f"paired={self.paired}, validate={self.validate}, correct={self.correct!r}, "
            f"correct_as_tensor={self.correct_as_tensor}"
        )


class MMTCriterion(_TripletCriterion):
    """MMT in place of AGW's ``TripletLoss_WRT``: ``criterion(feat, labels) -> (loss, correct)``.

    Args:
        paired: check ``labels[:B] == labels[B:]`` (AGW's sampler pairs rows); see
            :func:`agw_batch`.
        validate: value checks of the layout and of MMT (one host read together with
            ``correct``'s); ``False`` skips them.
        correct: ``"repo"`` (default, AGW's meaning, :func:`triplet_correct`) or ``"mmt"``
            (:func:`mmt_correct`).
        correct_as_tensor: return ``correct`` as a 0-d int64 tensor (no host sync) instead of
            an ``int``.
        correct_alpha: softmax sharpness of the ``"repo"`` count (AGW: 1).
        **mmt_kwargs: forwarded to :class:`mag_mmt.MultiMaskingTripletLoss` (``margin=0.3``,
            ``pos_margin=0.1``, ``pos_weight=1.0``, ``positive_modality``, ...).

    Call ``criterion(feat (2B, D), labels (2B,), normalize_feature=False)``; returns
    ``(loss (0-d), correct)``. ``criterion.mmt.last_parts`` holds MMAN, MMAP and the number of
    valid anchors of the last call.

    Example:
        >>> import torch
        >>> from mag_mmt.adapters import agw
        >>> criterion_tri = agw.MMTCriterion(margin=0.3)
        >>> feat = torch.randn(8, 16, requires_grad=True)        # [4 visible | 4 thermal]
        >>> labels = torch.cat((torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 1, 1])))
        >>> loss_tri, batch_acc = criterion_tri(feat, labels)
        >>> loss_tri.backward(); isinstance(batch_acc, int)
        True
    """

    def build_batch(self, feat: torch.Tensor, labels: torch.Tensor):
        return agw_batch(feat, labels, paired=self.paired, validate=self.validate)
