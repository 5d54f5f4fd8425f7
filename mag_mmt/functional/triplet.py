"""The multi-masking triplet loss (MMT, paper Eq. 1) and the triplet baselines built on it.

Batch convention: ``embeddings`` ``(N, D)``, ``labels`` ``(N,)`` identities (any integers,
negative ones included), ``modalities`` ``(N,)`` with 0 = visible, 1 = thermal/infrared.

For an anchor ``a`` of modality ``M`` (``M'`` the other one) and the defaults
``positive_modality = negative_modality = "cross"``::

    P(a) = same identity, modality M', not a itself      N(a) = other identity, modality M'
    MMAN(a) = [ max_{p in P(a)} d(a,p) - min_{n in N(a)} d(a,n) + margin ]_+
    MMAP(a) = [ max_{p in P(a)} d(a,p) - min_{p in P(a)} d(a,p) - pos_margin ]_+
    L = reduce over valid anchors of  mman_weight * MMAN(a) + pos_weight * MMAP(a)

``mman_weight`` (default 1) and ``pos_weight`` (lambda, default 1) make MMAN alone
(``pos_weight=0``), MMAP alone (``mman_weight=0``) and both plain configurations. An anchor is
valid when ``P(a)`` and ``N(a)`` are both non-empty (whatever the weights) and it passes the
``anchors`` switch; invalid anchors contribute 0 and are not counted by ``"mean"``. A batch
without a valid anchor gives 0 with zero (finite) gradients.

How it runs: per chunk of anchors, one matmul gives an ``(A, M)`` score matrix ordered like
the distances (:func:`~mag_mmt.functional.distances.mining_scores`), *without autograd*; labels and
modalities are broadcast into positive/negative masks (:mod:`~mag_mmt.functional.mining`), and masked max/min (``-inf``/``+inf``
fill) pick three reference columns per anchor. Only those ``3 * N`` distances are then
recomputed, exactly and differentiably, from the embeddings
(:func:`~mag_mmt.functional.distances.indexed_distance`), so backward costs ``O(N * D)`` and no ``N x N``
tensor is kept for it. No ``.item()``, boolean indexing or data-dependent branch is on the path;
with ``validate=False`` there is no host sync at all and ``torch.compile(fullgraph=True)``
traces it.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

from mag_mmt import _validation as V
from mag_mmt import distributed as _dist
from mag_mmt.functional.distances import _IndexedDistance, _no_autocast, as_float32, check_distance, pairwise_distance
from mag_mmt.functional.mining import (
    ANCHOR_CHOICES,
    MODALITY_CHOICES,
    AnchorChoice,
    ModalityChoice,
    anchor_mask,
    mine_chunked,
    pair_masks,
    soft_pick,
)
from mag_mmt.modalities import THERMAL, VISIBLE

__all__ = [
    "MMTOutput",
    "multi_masking_triplet_loss",
    "batch_hard_triplet_loss",
    "weighted_regularized_triplet_loss",
    "adaptive_weighted_triplet_loss",
    "concat_modalities",
]

Reduction = Literal["mean", "sum", "none"]
_REDUCTIONS = ("mean", "sum", "none")


class MMTOutput(NamedTuple):
    """Loss and its parts, all tensors (reading them does not sync until you call ``.item()``).

    ``loss = mman_weight * mman + pos_weight * mmap``; ``mman``/``mmap`` are the unweighted
    terms, reduced like the loss (0-d for ``"mean"``/``"sum"``, ``(N,)`` for ``"none"``);
    ``num_valid`` is the 0-d int64 number of valid anchors the mean divides by (over all ranks
    with ``cross_rank=True``).
    """

    loss: torch.Tensor
    mman: torch.Tensor
    mmap: torch.Tensor
    num_valid: torch.Tensor


# ----------------------------------------------------------------------------- checks


def _check_choice(value: str, name: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _check_options(
    positive_modality: str, negative_modality: str, anchors: str, distance: str, reduction: str,
    chunk_size: int | None,
) -> None:
    _check_choice(positive_modality, "positive_modality", MODALITY_CHOICES)
    _check_choice(negative_modality, "negative_modality", MODALITY_CHOICES)
    _check_choice(anchors, "anchors", ANCHOR_CHOICES)
    _check_choice(reduction, "reduction", _REDUCTIONS)
    check_distance(distance)
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")


def _check_batch(
    embeddings: torch.Tensor, labels: torch.Tensor, modalities: torch.Tensor, prefix: str = "",
    values: bool = True,
) -> list[tuple[torch.Tensor, str]]:
    """Static checks (raise now) and, with ``values``, the value checks to read back later
    (returned; not even computed without ``values``, so ``validate=False`` costs no kernel)."""
    e, l, m = f"{prefix}embeddings", f"{prefix}labels", f"{prefix}modalities"
    V.check_tensor(embeddings, e, 2)
    V.check_floating(embeddings, e)
    V.check_tensor(labels, l, 1)
    V.check_integer(labels, l)
    V.check_tensor(modalities, m, 1)
    V.check_integer(modalities, m)
    V.check_same_length(e, embeddings, l, labels)
    V.check_same_length(e, embeddings, m, modalities)
    V.check_same_device(**{e: embeddings, l: labels, m: modalities})
    if embeddings.shape[1] == 0:
        raise ValueError(f"{e} must have at least one feature, got shape {tuple(embeddings.shape)}")
    if not values:
        return []
    if embeddings.numel():  # one pass: NaN propagates, +-Inf shows up as an extreme
        lo, hi = torch.aminmax(embeddings.detach())
        finite = torch.isfinite(lo) & torch.isfinite(hi)
    else:
        finite = torch.isfinite(embeddings).all()
    return [
        (finite, f"{e} contain NaN or Inf"),
        (((modalities == VISIBLE) | (modalities == THERMAL)).all(),
         f"{m} must hold only {VISIBLE} (visible) and {THERMAL} (thermal)"),
    ]


def _check_all(
    embeddings, labels, modalities, ref_emb, ref_labels, ref_modalities, validate: bool
) -> None:
    values = validate and not V.is_compiling()
    value_checks = _check_batch(embeddings, labels, modalities, values=values)
    refs = (ref_emb, ref_labels, ref_modalities)
    if any(r is not None for r in refs):
        if any(r is None for r in refs):
            raise ValueError("ref_emb, ref_labels and ref_modalities must be given together")
        value_checks += _check_batch(ref_emb, ref_labels, ref_modalities, prefix="ref_", values=values)
        if ref_emb.shape[1] != embeddings.shape[1]:
            raise ValueError(
                f"embeddings and ref_emb must have the same feature size, got "
                f"{embeddings.shape[1]} and {ref_emb.shape[1]}"
            )
        V.check_same_device(embeddings=embeddings, ref_emb=ref_emb)
    if values:
        V.check_values(value_checks)


def _check_weights(**weights: float) -> None:
    for name, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 <= w < math.inf:  # NaN fails too
            raise ValueError(f"{name} must be a finite number >= 0, got {w!r}")


def _weighted(term: torch.Tensor, weight: float) -> torch.Tensor:
    return term if weight == 1.0 else term * weight


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``a`` and ``b`` are the same tensor: the same object, or (eagerly, plain tensors)
    views of the same memory with the same shape, strides, dtype and device. Metadata only: no
    host sync. Tensor subclasses (fake, distributed, ...) count only as the same object."""
    if a is b:
        return True
    if V.is_compiling() or type(a) is not torch.Tensor or type(b) is not torch.Tensor or a.numel() == 0:
        return False
    return (a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride()
            and a.dtype == b.dtype and a.device == b.device)


# ----------------------------------------------------------------------------- the loss


def _prepare(x: torch.Tensor, normalize: bool) -> torch.Tensor:
    """float32 (float64 kept), L2-normalised when asked (or for cosine), autocast off."""
    with _no_autocast(x.device):
        x = as_float32(x)
        return F.normalize(x, dim=1, eps=1e-12) if normalize else x


def multi_masking_triplet_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    modalities: torch.Tensor,
    *,
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
    ref_emb: torch.Tensor | None = None,
    ref_labels: torch.Tensor | None = None,
    ref_modalities: torch.Tensor | None = None,
    chunk_size: int | None = None,
    cross_rank: bool = False,
    scale_by_world_size: bool = True,
    validate: bool = True,
    return_parts: bool = False,
) -> torch.Tensor | MMTOutput:
    """Multi-masking triplet loss (paper Eq. 1); see the module docstring for the formula.

    Args:
        embeddings: ``(N, D)`` floating (fp16/bf16 are upcast: distances are float32).
        labels: ``(N,)`` integer identities.
        modalities: ``(N,)`` integer, 0 = visible, 1 = thermal.
        margin: ``m1`` of MMAN (default 0.3, our default, not from the paper).
        pos_margin: ``m2`` of MMAP (default 0.1, ours).
        pos_weight: ``lambda`` weighting MMAP (default 1.0, ours); 0 turns MMAP off (MMAN only).
        mman_weight: weight of MMAN (default 1.0); 0 turns MMAN off (MMAP only). Both weights
            must be finite and >= 0; anchors count as valid whatever the weights.
        positive_modality, negative_modality: ``"cross"`` (paper), ``"same"`` (literal reading
            of the extracted formula, for positives), ``"any"``.
        anchors: ``"both"`` (default), ``"visible"`` (visible-to-thermal only) or ``"thermal"``.
        distance: ``"euclidean"`` (default), ``"sqeuclidean"`` or ``"cosine"``.
        normalize: L2-normalise the embeddings first.
        reduction: ``"mean"`` over valid anchors (default), ``"sum"``, or ``"none"``: ``(N,)``
            per anchor, 0 where invalid.
        ref_emb, ref_labels, ref_modalities: optional reference set ``(M, D)``, ``(M,)``,
            ``(M,)`` (pytorch-metric-learning's ``ref_emb`` convention): the rows of
            ``embeddings`` are the anchors, positives and negatives come from the reference
            set. A reference set that *is* the batch (``ref_emb`` the same tensor as
            ``embeddings``: the same object, or the same memory, shape, strides and dtype, as
            in PML's ``ref_emb=embeddings``) is recognised: anchor ``i`` is never its own
            positive, so the result equals the call without a reference set (taking the
            labels and modalities of the reference rows from ``ref_labels``/``ref_modalities``).
            Otherwise no reference row is excluded as "itself": pass a copy only if you mean it.
            With ``cross_rank=True`` the references are the (global) batch followed by the set,
            each anchor's own row excluded (:class:`mag_mmt.memory.CrossModalityMemory` passes
            its queue this way); a set that is the batch is then not added a second time.
        chunk_size: anchors per mining chunk; ``None`` picks chunks of at most
            ``AUTO_CHUNK_ELEMENTS`` matrix cells. Results do not depend on it.
        cross_rank: with an initialised ``torch.distributed`` group, gather embeddings,
            labels and modalities of all ranks (same ``N`` on every rank); local rows are the
            anchors, the global batch the references; gradients flow back to the owning rank.
            Each rank then returns its *share*: the sum over its valid anchors divided by the
            global number of valid anchors (``"mean"``), so the shares sum to the loss of one
            process on the concatenated batch. Without a group the global batch is the local
            one (which matters only with a reference set).
        scale_by_world_size: with ``cross_rank``, multiply the share (``"mean"``/``"sum"``) by
            the world size, so that after DDP's gradient *averaging* the parameters get exactly
            the gradient of the single-process loss on the global batch. Set ``False`` to get
            the bare share (then sum the ranks' values for the global loss).
        validate: read the values back once to reject NaN/Inf embeddings and modality codes
            outside {0, 1}. ``False`` makes the call free of host syncs. Shape, dtype and
            device checks always run; value checks are skipped under ``torch.compile``.
        return_parts: return :class:`MMTOutput` instead of the loss alone.

    Returns:
        0-d float32 tensor (float64 for float64 inputs), ``(N,)`` for ``reduction="none"``,
        or :class:`MMTOutput` with ``return_parts=True``.

    Example:
        >>> import torch
        >>> from mag_mmt.functional import multi_masking_triplet_loss
        >>> x = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
        >>> labels, modalities = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1])
        >>> multi_masking_triplet_loss(x, labels, modalities, margin=0.3)
        tensor(0.)
        >>> multi_masking_triplet_loss(x, labels, modalities, margin=10.5)
        tensor(1.5000)
        >>> multi_masking_triplet_loss(x, labels, modalities, margin=10.5, mman_weight=0.0)  # MMAP only
        tensor(0.)
    """
    _check_options(positive_modality, negative_modality, anchors, distance, reduction, chunk_size)
    _check_weights(mman_weight=mman_weight, pos_weight=pos_weight)
    _check_all(embeddings, labels, modalities, ref_emb, ref_labels, ref_modalities, validate)

    unit = normalize or distance == "cosine"
    x = _prepare(embeddings, unit)
    n = x.shape[0]
    world = _dist.world_size() if cross_rank else 1
    ref_is_batch = ref_emb is not None and _same_tensor(ref_emb, embeddings)
    if ref_emb is not None and not cross_rank:
        r_lab, r_mod = ref_labels, ref_modalities
        if ref_is_batch:  # PML's ref_emb=embeddings: the batch itself (a detached view stays detached)
            r = x if ref_emb.requires_grad == embeddings.requires_grad else _prepare(ref_emb, unit)
            anchor_index = None if positive_modality == "cross" else torch.arange(n, device=x.device)
        else:
            r, anchor_index = _prepare(ref_emb, unit), None
    elif world > 1:
        r = _dist.all_gather_with_grad(x)
        r_lab = _dist.all_gather_no_grad(labels)
        r_mod = _dist.all_gather_no_grad(modalities)
        anchor_index = torch.arange(n, device=x.device) + _dist.rank() * n
    else:
        r, r_lab, r_mod = x, labels, modalities
        # the anchor's own column (only "same"/"any" positives need it: "cross" never pairs a row with itself)
        anchor_index = None if positive_modality == "cross" else torch.arange(n, device=x.device)
    if ref_emb is not None and cross_rank and not ref_is_batch:  # the (global) batch, then the set
        r = torch.cat([r, _prepare(ref_emb, unit).to(r.dtype)])
        r_lab, r_mod = torch.cat([r_lab, ref_labels]), torch.cat([r_mod, ref_modalities])  # type: ignore[list-item]
    assert r_lab is not None and r_mod is not None

    if r.shape[0] == 0:  # nothing to compare with: every anchor is invalid (static shape branch)
        valid = torch.zeros(n, dtype=torch.bool, device=x.device)
        zero = torch.where(valid, x.sum(dim=1), 0.0)
        mman = mmap = zero
    else:
        mined = mine_chunked(x, r, labels, modalities, r_lab, r_mod, positive_modality=positive_modality,
                             negative_modality=negative_modality, anchor_index=anchor_index,
                             distance=distance, chunk_size=chunk_size)
        index = torch.stack([mined.hard_positive, mined.easy_positive, mined.hard_negative], dim=1)
        with _no_autocast(x.device):  # inputs are prepared: the bare Function, no re-normalising
            d_hp, d_ep, d_hn = _IndexedDistance.apply(
                x, None if r is x else (r if r.dtype == x.dtype else r.to(x.dtype)), index, distance).unbind(1)
        valid = mined.has_positive & mined.has_negative
        selected = anchor_mask(modalities, anchors)
        if selected is not None:
            valid = valid & selected
        mman = torch.where(valid, F.relu(d_hp - d_hn + margin), 0.0)
        mmap = torch.where(valid, F.relu(d_hp - d_ep - pos_margin), 0.0)
    per_anchor = _weighted(mman, mman_weight) + _weighted(mmap, pos_weight)

    num_valid = valid.sum()
    if world > 1:
        num_valid = _dist.all_reduce_sum(num_valid)
    if reduction == "none":
        out = MMTOutput(per_anchor, mman, mmap, num_valid)
    else:
        scale = float(world) if (world > 1 and scale_by_world_size) else 1.0
        if reduction == "mean":
            denom = num_valid.clamp_min(1).to(per_anchor.dtype) / scale
        else:
            denom = torch.ones((), dtype=per_anchor.dtype, device=per_anchor.device) / scale
        out = MMTOutput(per_anchor.sum() / denom, mman.sum() / denom, mmap.sum() / denom, num_valid)
    return out if return_parts else out.loss


def batch_hard_triplet_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    modalities: torch.Tensor | None = None,
    *,
    margin: float = 0.3,
    **kwargs,
) -> torch.Tensor | MMTOutput:
    """Classic batch-hard triplet loss (Hermans et al.): per anchor, the hardest positive of
    any modality against the hardest negative of any modality. It *is* the MMT core with
    ``positive_modality = negative_modality = "any"`` and ``pos_weight = 0``; ``modalities``
    may be ``None`` (then all rows count as visible). Other keywords as
    :func:`multi_masking_triplet_loss`.

    Example:
        >>> import torch
        >>> from mag_mmt.functional import batch_hard_triplet_loss
        >>> x = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
        >>> batch_hard_triplet_loss(x, torch.tensor([0, 0, 1, 1]), margin=1.0)
        tensor(0.)
    """
    if modalities is None:
        V.check_tensor(labels, "labels", 1)
        modalities = torch.zeros_like(labels, dtype=torch.int64)
    for fixed in ("positive_modality", "negative_modality", "pos_weight", "mman_weight"):
        if fixed in kwargs:
            raise TypeError(f"batch_hard_triplet_loss does not take {fixed}")
    return multi_masking_triplet_loss(
        embeddings, labels, modalities, margin=margin, pos_margin=0.0, pos_weight=0.0,
        positive_modality="any", negative_modality="any", **kwargs,
    )


def weighted_regularized_triplet_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    modalities: torch.Tensor | None = None,
    *,
    positive_modality: ModalityChoice = "any",
    negative_modality: ModalityChoice = "any",
    anchors: AnchorChoice = "both",
    distance: Literal["euclidean", "sqeuclidean", "cosine"] = "euclidean",
    normalize: bool = False,
    reduction: Reduction = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """Weighted regularised triplet (WRT, the AGW baseline): no margin, soft weights.

    Per anchor ``a``: ``dp = sum_p softmax_p(d(a,p)) d(a,p)`` over positives,
    ``dn = sum_n softmax_n(-d(a,n)) d(a,n)`` over negatives, loss ``softplus(dp - dn)``
    (= soft-margin ``log(1 + exp(dp - dn))``); reduced over valid anchors like MMT. The anchor is
    not its own positive (AGW's code keeps it in, with weight ``exp(-max d)``); the masks are the
    MMT masks, so ``"cross"`` restricts the sets to the other modality. Gradients flow through the
    weights. Needs the full ``(N, N)`` matrix with autograd (no chunking).

    Example:
        >>> import torch
        >>> from mag_mmt.functional import weighted_regularized_triplet_loss
        >>> x = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
        >>> round(float(weighted_regularized_triplet_loss(x, torch.tensor([0, 0, 1, 1]))), 4)
        0.0002
    """
    _check_options(positive_modality, negative_modality, anchors, distance, reduction, None)
    if modalities is None:
        V.check_tensor(labels, "labels", 1)
        modalities = torch.zeros_like(labels, dtype=torch.int64)
    _check_all(embeddings, labels, modalities, None, None, None, validate)
    x = _prepare(embeddings, normalize)
    n = x.shape[0]
    dist = pairwise_distance(x, distance=distance)
    pos, neg = pair_masks(labels, modalities, labels, modalities, positive_modality,
                          negative_modality, torch.arange(n, device=x.device))
    dp = soft_pick(dist, dist, pos)  # leans to the farthest positive
    dn = soft_pick(dist, -dist, neg)  # leans to the nearest negative
    valid = pos.any(dim=1) & neg.any(dim=1)
    selected = anchor_mask(modalities, anchors)
    if selected is not None:
        valid = valid & selected
    per_anchor = torch.where(valid, F.softplus(dp - dn), 0.0)
    if reduction == "none":
        return per_anchor
    if reduction == "sum":
        return per_anchor.sum()
    return per_anchor.sum() / valid.sum().clamp_min(1).to(per_anchor.dtype)


def concat_modalities(
    visible_emb: torch.Tensor,
    thermal_emb: torch.Tensor,
    visible_labels: torch.Tensor,
    thermal_labels: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two-tensor layout (AGW/CAJ: visible batch, thermal batch) to ``(embeddings, labels,
    modalities)``: visible rows first, then thermal rows.

    Example:
        >>> import torch
        >>> from mag_mmt.functional import concat_modalities
        >>> e, y, m = concat_modalities(torch.zeros(2, 4), torch.ones(3, 4),
        ...                             torch.tensor([1, 2]), torch.tensor([1, 2, 2]))
        >>> e.shape, m.tolist()
        (torch.Size([5, 4]), [0, 0, 1, 1, 1])
    """
    V.check_tensor(visible_emb, "visible_emb", 2)
    V.check_tensor(thermal_emb, "thermal_emb", 2)
    V.check_tensor(visible_labels, "visible_labels", 1)
    V.check_tensor(thermal_labels, "thermal_labels", 1)
    if visible_emb.shape[1] != thermal_emb.shape[1]:
        raise ValueError(
            f"visible_emb and thermal_emb must have the same feature size, got "
            f"{visible_emb.shape[1]} and {thermal_emb.shape[1]}"
        )
    mods = torch.cat([
        torch.full((visible_labels.shape[0],), VISIBLE, dtype=torch.int64, device=visible_labels.device),
        torch.full((thermal_labels.shape[0],), THERMAL, dtype=torch.int64, device=thermal_labels.device),
    ])
    return torch.cat([visible_emb, thermal_emb]), torch.cat([visible_labels, thermal_labels]), mods


def adaptive_weighted_triplet_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    modalities: torch.Tensor | None = None,
    *,
    alpha: float = 1.0,
    gamma: float = 1.0,
    square: bool = True,
    validate: bool = True,
) -> torch.Tensor:
    """CAJ's ADP triplet (``ICCV21_CAJ/loss.py`` ``TripletLoss_ADP``): WRT with a temperature
    ``alpha`` on the soft weights and, with ``square``, a squared-difference ranking term.

    Per anchor: ``dp = sum_p softmax_p(alpha * d(a,p)) d(a,p)`` over positives, ``dn = sum_n
    softmax_n(-alpha * d(a,n)) d(a,n)`` over negatives (euclidean distances). ``square=False``:
    ``softplus(gamma * (dp - dn))``; ``square=True`` (CAJ's ``--square 1``): with
    ``s = min(gamma * (dp - dn)^2, 88)``, ``softplus(s)`` if ``dp > dn`` else ``softplus(-s)``.
    Mean over anchors with a positive and a negative. As in :func:`weighted_regularized_triplet_loss`
    the anchor is not its own positive (CAJ's code keeps it, at distance 0). ``modalities`` is
    accepted for the common signature and ignored (ADP mines over both modalities).

    Example:
        >>> import torch
        >>> from mag_mmt.functional import adaptive_weighted_triplet_loss
        >>> x = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
        >>> round(float(adaptive_weighted_triplet_loss(x, torch.tensor([0, 0, 1, 1]))), 4)
        0.0
    """
    if validate:
        V.check_tensor(labels, "labels", 1)
        _check_all(embeddings, labels, torch.zeros_like(labels), None, None, None, validate)
    x = embeddings.float()
    n = x.shape[0]
    dist = pairwise_distance(x, distance="euclidean")
    # "any" modality rule: the modality arguments are not read
    pos, neg = pair_masks(labels, labels, labels, labels, "any", "any", torch.arange(n, device=x.device))
    dp = soft_pick(dist, alpha * dist, pos)
    dn = soft_pick(dist, -alpha * dist, neg)
    if square:
        s = (gamma * (dp - dn).pow(2)).clamp_max(88.0)
        per_anchor = F.softplus(torch.where(dp > dn, s, -s))
    else:
        per_anchor = F.softplus(gamma * (dp - dn))
    valid = pos.any(dim=1) & neg.any(dim=1)
    per_anchor = torch.where(valid, per_anchor, 0.0)
    return per_anchor.sum() / valid.sum().clamp_min(1).to(per_anchor.dtype)


