"""Slow, obviously correct reference implementations used as test oracles (and by the
benchmark as the "naive per-anchor loop").

Everything here is written per anchor and per pair, straight from docs/method.md#mmt-loss, with no
masks, no matrix tricks and no sharing of code with ``mag_mmt.losses``. The MMT reference
works on torch scalars so that it can also be differentiated (float64 recommended); the
batch-hard oracle is an independent NumPy implementation.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch


def ref_distance(a: torch.Tensor, b: torch.Tensor, distance: str = "euclidean", normalize: bool = False) -> torch.Tensor:
    """Distance between two 1-D vectors."""
    if normalize or distance == "cosine":
        a = a / torch.clamp(torch.sqrt((a * a).sum()), min=1e-12)
        b = b / torch.clamp(torch.sqrt((b * b).sum()), min=1e-12)
    if distance == "cosine":
        return 1.0 - (a * b).sum()
    sq = ((a - b) ** 2).sum()
    if distance == "sqeuclidean":
        return sq
    if distance == "euclidean":
        return torch.sqrt(torch.clamp(sq, min=1e-12))
    raise ValueError(distance)


def _modality_ok(rule: str, anchor_mod: int, other_mod: int) -> bool:
    if rule == "cross":
        return anchor_mod != other_mod
    if rule == "same":
        return anchor_mod == other_mod
    return True


def reference_mmt(
    embeddings: torch.Tensor,
    labels: Sequence[int],
    modalities: Sequence[int],
    *,
    margin: float = 0.3,
    pos_margin: float = 0.1,
    pos_weight: float = 1.0,
    mman_weight: float = 1.0,
    positive_modality: str = "cross",
    negative_modality: str = "cross",
    anchors: str = "both",
    distance: str = "euclidean",
    normalize: bool = False,
    reduction: str = "mean",
    ref_emb: torch.Tensor | None = None,
    ref_labels: Sequence[int] | None = None,
    ref_modalities: Sequence[int] | None = None,
):
    """Returns ``(loss, mman, mmap, num_valid)`` reduced like the library, per anchor for
    ``reduction="none"`` (lists of 0-d tensors stacked); ``loss = mman_weight * mman +
    pos_weight * mmap``. A reference set that is the very tensor ``embeddings`` counts as the
    batch itself: row ``i`` is then skipped as its own pair, as without a reference set."""
    labels = [int(v) for v in labels]
    modalities = [int(v) for v in modalities]
    has_ref = ref_emb is not None and ref_emb is not embeddings
    if ref_emb is None:
        ref_emb, ref_labels, ref_modalities = embeddings, labels, modalities
    ref_labels = [int(v) for v in ref_labels]
    ref_modalities = [int(v) for v in ref_modalities]
    zero = embeddings.sum() * 0.0
    mman_list, mmap_list, valid = [], [], 0
    for i in range(len(labels)):
        counts = anchors == "both" or (anchors == "visible" and modalities[i] == 0) or (
            anchors == "thermal" and modalities[i] == 1
        )
        positives, negatives = [], []
        for j in range(len(ref_labels)):
            if not has_ref and j == i:
                continue  # the anchor is never its own positive
            d = ref_distance(embeddings[i], ref_emb[j], distance, normalize)
            if ref_labels[j] == labels[i]:
                if _modality_ok(positive_modality, modalities[i], ref_modalities[j]):
                    positives.append(d)
            elif _modality_ok(negative_modality, modalities[i], ref_modalities[j]):
                negatives.append(d)
        if not counts or not positives or not negatives:
            mman_list.append(zero)
            mmap_list.append(zero)
            continue
        valid += 1
        hardest_pos = max(positives, key=lambda t: float(t.detach()))
        easiest_pos = min(positives, key=lambda t: float(t.detach()))
        hardest_neg = min(negatives, key=lambda t: float(t.detach()))
        mman_list.append(torch.clamp(hardest_pos - hardest_neg + margin, min=0.0))
        mmap_list.append(torch.clamp(hardest_pos - easiest_pos - pos_margin, min=0.0))
    if not mman_list:
        mman = mmap = embeddings.new_zeros(0)
    else:
        mman, mmap = torch.stack(mman_list), torch.stack(mmap_list)
    if reduction == "none":
        return mman_weight * mman + pos_weight * mmap, mman, mmap, valid
    mman, mmap = mman.sum(), mmap.sum()
    if reduction == "mean":
        mman, mmap = mman / max(valid, 1), mmap / max(valid, 1)
    return mman_weight * mman + pos_weight * mmap, mman, mmap, valid


def numpy_batch_hard(embeddings: np.ndarray, labels: Sequence[int], margin: float) -> float:
    """Classic batch-hard triplet loss, written independently in NumPy (float64):
    mean over anchors that have a positive (other than themselves) and a negative."""
    x = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(labels)
    losses = []
    for i in range(len(y)):
        d = np.sqrt(((x - x[i]) ** 2).sum(axis=1))
        same = y == y[i]
        same[i] = False
        other = y != y[i]
        if not same.any() or not other.any():
            continue
        losses.append(max(d[same].max() - d[other].min() + margin, 0.0))
    return float(np.mean(losses)) if losses else 0.0


def reference_wrt(embeddings: torch.Tensor, labels: Sequence[int]) -> float:
    """Weighted regularised triplet, per anchor with ``math.exp``: softmax(d) weighted positives
    (anchor excluded), softmax(-d) weighted negatives, ``log(1 + exp(dp - dn))``, mean over
    anchors with both sets."""
    x = embeddings.double()
    labels = [int(v) for v in labels]
    losses = []
    for i in range(len(labels)):
        pos = [float(ref_distance(x[i], x[j])) for j in range(len(labels)) if j != i and labels[j] == labels[i]]
        neg = [float(ref_distance(x[i], x[j])) for j in range(len(labels)) if labels[j] != labels[i]]
        if not pos or not neg:
            continue
        mp, mn = max(pos), max(-d for d in neg)
        wp = [math.exp(d - mp) for d in pos]
        wn = [math.exp(-d - mn) for d in neg]
        dp = sum(w * d for w, d in zip(wp, pos)) / sum(wp)
        dn = sum(w * d for w, d in zip(wn, neg)) / sum(wn)
        losses.append(math.log1p(math.exp(dp - dn)))
    return sum(losses) / len(losses) if losses else 0.0
