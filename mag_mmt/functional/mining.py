"""Masked mining: which pairs count as positives/negatives, which anchors count, and the picks.

Every triplet loss of the library and the adapters' diagnostics use these functions:

* :func:`pair_masks` -- ``(A, M)`` positive and negative masks from labels x modalities
  (``"cross"``, ``"same"`` or ``"any"`` modality rule; an anchor is never its own positive).
* :func:`anchor_mask` -- the ``anchors`` rule (``"both"``, ``"visible"``, ``"thermal"``).
* :func:`masked_hard_mining` -- hardest/easiest positive and hardest negative per anchor
  (masked max/min with ``-inf``/``+inf`` fill; no host sync), and :func:`mine_chunked`, the
  same on score chunks of at most ``AUTO_CHUNK_ELEMENTS`` cells, without autograd.
* :func:`soft_weights` / :func:`soft_pick` -- the softmax-weighted pick of WRT, ADP and the
  AGW/CAJ ``correct`` count.

Example:
    >>> import torch
    >>> from mag_mmt.functional import pair_masks
    >>> y, m = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 0])
    >>> pos, neg = pair_masks(y, m, y, m)
    >>> pos.int().tolist(), neg.int().tolist()
    ([[0, 1, 0], [1, 0, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 1], [0, 1, 0]])
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch

from mag_mmt.functional.distances import mining_operands, mining_scores_from
from mag_mmt.modalities import THERMAL, VISIBLE

__all__ = [
    "MinedTriplets",
    "pair_masks",
    "anchor_mask",
    "masked_hard_mining",
    "mine_chunked",
    "soft_weights",
    "soft_pick",
    "AUTO_CHUNK_ELEMENTS",
]

ModalityChoice = Literal["cross", "same", "any"]
AnchorChoice = Literal["both", "visible", "thermal"]
MODALITY_CHOICES = ("cross", "same", "any")
ANCHOR_CHOICES = ("both", "visible", "thermal")
#: with ``chunk_size=None`` anchors are mined in chunks of at most this many matrix cells
AUTO_CHUNK_ELEMENTS = 1 << 22


class MinedTriplets(NamedTuple):
    """Per anchor ``(A,)``: column indices of the hardest positive, easiest positive and hardest
    negative, and whether the positive / negative set was non-empty. Indices of empty sets are
    arbitrary but in range."""

    hard_positive: torch.Tensor
    easy_positive: torch.Tensor
    hard_negative: torch.Tensor
    has_positive: torch.Tensor
    has_negative: torch.Tensor


def _modality_rule(modalities: torch.Tensor, ref_modalities: torch.Tensor, which: str) -> torch.Tensor | None:
    """``(A, M)`` mask of the pairs whose modalities pass the rule, ``None`` for ``"any"``."""
    if which == "any":
        return None
    if which == "cross":
        return modalities.unsqueeze(1) != ref_modalities.unsqueeze(0)
    return modalities.unsqueeze(1) == ref_modalities.unsqueeze(0)


def pair_masks(
    labels: torch.Tensor,
    modalities: torch.Tensor,
    ref_labels: torch.Tensor,
    ref_modalities: torch.Tensor,
    positive_modality: ModalityChoice = "cross",
    negative_modality: ModalityChoice = "cross",
    anchor_index: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, M)`` boolean positive and negative masks of ``A`` anchors against ``M`` references.

    ``pos = same identity & modality rule``, ``neg = other identity & modality rule``, with the
    rule ``"cross"`` (other modality than the anchor), ``"same"`` or ``"any"``.
    ``anchor_index`` ``(A,)`` is the reference column holding each anchor itself (excluded from
    its positives) or ``None``. Labels and modalities are compared separately (no combined key,
    which would overflow near the int64 limits).
    """
    same_id = labels.unsqueeze(1) == ref_labels.unsqueeze(0)
    pos_mod = _modality_rule(modalities, ref_modalities, positive_modality)
    pos = same_id if pos_mod is None else same_id & pos_mod
    if anchor_index is not None and positive_modality != "cross":  # "cross" never pairs a row with itself
        pos = pos.scatter(1, anchor_index.unsqueeze(1), False)
    neg_mod = pos_mod if negative_modality == positive_modality else _modality_rule(
        modalities, ref_modalities, negative_modality)
    # modality_ok & ~same_id, written as one comparison on booleans
    return pos, (~same_id if neg_mod is None else neg_mod > same_id)


def anchor_mask(modalities: torch.Tensor, anchors: AnchorChoice) -> torch.Tensor | None:
    """``(N,)`` mask of the rows that may be anchors: ``"visible"`` rows, ``"thermal"`` rows,
    or ``None`` for ``"both"`` (every row).

    Example:
        >>> import torch
        >>> anchor_mask(torch.tensor([0, 1, 1]), "thermal").tolist()
        [False, True, True]
    """
    if anchors == "visible":
        return modalities == VISIBLE
    if anchors == "thermal":
        return modalities == THERMAL
    return None


def masked_hard_mining(
    dist: torch.Tensor,
    labels: torch.Tensor,
    modalities: torch.Tensor,
    ref_labels: torch.Tensor,
    ref_modalities: torch.Tensor,
    *,
    positive_modality: ModalityChoice = "cross",
    negative_modality: ModalityChoice = "cross",
    anchor_index: torch.Tensor | None = None,
) -> MinedTriplets:
    """Masked hard-example mining on a precomputed distance matrix (no autograd through it).

    Args:
        dist: ``(A, M)`` distances from ``A`` anchors to ``M`` references, ``M >= 1``, or any
            scores that order each row the same way (:func:`~mag_mmt.functional.distances.mining_scores`).
        labels, modalities: ``(A,)`` of the anchors; ``ref_labels``, ``ref_modalities``: ``(M,)``.
        positive_modality, negative_modality: ``"cross"``, ``"same"`` or ``"any"``.
        anchor_index: ``(A,)`` column of each anchor in the references (never its own
            positive), or ``None`` when anchors and references are distinct samples.

    Returns:
        :class:`MinedTriplets` of ``(A,)`` tensors; no host sync.

    Example:
        >>> import torch
        >>> from mag_mmt.functional import masked_hard_mining, pairwise_distance
        >>> x = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
        >>> y, m = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1])
        >>> mined = masked_hard_mining(pairwise_distance(x), y, m, y, m, anchor_index=torch.arange(4))
        >>> mined.hard_positive.tolist(), mined.hard_negative.tolist()
        ([1, 0, 3, 2], [3, 2, 1, 0])
    """
    pos, neg = pair_masks(labels, modalities, ref_labels, ref_modalities,
                          positive_modality, negative_modality, anchor_index)
    d = dist.detach()
    inf = float("inf")
    hp_val, hp_idx = torch.where(pos, d, -inf).max(dim=1)
    ep_idx = torch.where(pos, d, inf).argmin(dim=1)
    hn_val, hn_idx = torch.where(neg, d, inf).min(dim=1)
    return MinedTriplets(hp_idx, ep_idx, hn_idx, hp_val > -inf, hn_val < inf)


def mine_chunked(
    x: torch.Tensor,
    r: torch.Tensor,
    labels: torch.Tensor,
    modalities: torch.Tensor,
    ref_labels: torch.Tensor,
    ref_modalities: torch.Tensor,
    *,
    positive_modality: ModalityChoice = "cross",
    negative_modality: ModalityChoice = "cross",
    anchor_index: torch.Tensor | None = None,
    distance: str = "euclidean",
    chunk_size: int | None = None,
) -> MinedTriplets:
    """:func:`masked_hard_mining` of anchors ``x`` ``(A, D)`` against references ``r`` ``(M, D)``
    (pass ``r is x`` for the batch itself) on one-matmul scores, without autograd, in chunks of
    ``chunk_size`` anchors (``None``: at most ``AUTO_CHUNK_ELEMENTS`` cells at a time). Cosine
    expects unit rows. The result does not depend on the chunking."""
    a, m = x.shape[0], r.shape[0]
    rows = chunk_size if chunk_size is not None else max(1, AUTO_CHUNK_ELEMENTS // max(m, 1))
    opts = dict(positive_modality=positive_modality, negative_modality=negative_modality)
    with torch.no_grad():
        xd = x.detach()
        xd, rd, bias = mining_operands(xd, xd if r is x else r.detach(), distance=distance)  # type: ignore[arg-type]
        if rows >= a:  # one chunk: no slicing
            return masked_hard_mining(mining_scores_from(xd, rd, bias), labels, modalities, ref_labels,
                                      ref_modalities, anchor_index=anchor_index, **opts)  # type: ignore[arg-type]
        parts = [
            masked_hard_mining(
                mining_scores_from(xd[s:s + rows], rd, bias), labels[s:s + rows], modalities[s:s + rows],
                ref_labels, ref_modalities, anchor_index=None if anchor_index is None else anchor_index[s:s + rows],
                **opts,  # type: ignore[arg-type]
            )
            for s in range(0, a, rows)
        ]
    return MinedTriplets(*(torch.cat(ts) for ts in zip(*parts)))


def soft_weights(logits: torch.Tensor, mask: torch.Tensor, *, eps: float = 0.0) -> torch.Tensor:
    """Row-wise softmax of ``logits`` ``(A, M)`` over the entries where ``mask`` is True; 0 elsewhere.

    ``eps = 0`` (the losses): an exact masked softmax, rows without a member get all-zero
    weights (no NaN). ``eps > 0``: the AGW/CAJ repositories' arithmetic, ``e / (sum e + eps)``
    with ``e = exp(logits - max_j(mask ? logits : 0))``, so the weights of a row sum to less
    than 1 once its members are far below the shift.

    Example:
        >>> import torch
        >>> w = soft_weights(torch.tensor([[0.0, 1.0, 5.0]]), torch.tensor([[True, True, False]]))
        >>> [round(v, 4) for v in w[0].tolist()]
        [0.2689, 0.7311, 0.0]
    """
    if eps == 0.0:
        inf = float("inf")
        logits = torch.where(mask, logits, -inf)
        logits = torch.where(mask.any(dim=1, keepdim=True), logits, 0.0)  # rows without a member: no NaN
        return torch.where(mask, torch.softmax(logits, dim=1), 0.0)
    shift = torch.where(mask, logits, 0.0).amax(dim=1, keepdim=True)
    e = torch.where(mask, (logits - shift).exp(), 0.0)
    return e / (e.sum(dim=1, keepdim=True) + eps)


def soft_pick(values: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor, *, eps: float = 0.0) -> torch.Tensor:
    """``(A,)`` soft-weighted pick ``sum_j soft_weights(logits, mask)[i, j] * values[i, j]``.

    With ``logits = d`` it leans to the farthest positive, with ``logits = -d`` to the nearest
    negative (WRT: ``alpha = 1``; ADP: ``logits = +-alpha * d``). Gradients flow through the
    weights. 0 for rows without a member.

    Example:
        >>> import torch
        >>> d = torch.tensor([[1.0, 3.0]])
        >>> round(float(soft_pick(d, d, torch.tensor([[True, True]]))), 4)
        2.7616
    """
    return torch.where(mask, soft_weights(logits, mask, eps=eps) * values, 0.0).sum(dim=1)
