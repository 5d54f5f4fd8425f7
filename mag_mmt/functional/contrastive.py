"""Cycle-consistent patch pairs between two images and the InfoNCE over them.

Patch ``i`` of image ``a`` and patch ``j`` of image ``b`` are a cycle-consistent pair when
they are mutual nearest neighbours (``a -> b -> a`` returns to ``i``);
:func:`cycle_infonce_loss` pulls those pairs together against the other patches.

Example:
    >>> import torch
    >>> import torch.nn.functional as F
    >>> from mag_mmt.functional import cycle_infonce_loss
    >>> a = F.normalize(torch.randn(2, 6, 8), dim=-1)          # (B, N, D) patch features
    >>> bool(cycle_infonce_loss(a, a.clone(), temperature=0.1) < 0.5)
    True
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from mag_mmt._validation import check_floating, check_tensor

__all__ = ["cycle_consistent_pairs", "cycle_infonce_loss"]

Negatives = Literal["pair", "batch"]


def _check_patch_feats(feats_a: torch.Tensor, feats_b: torch.Tensor) -> None:
    check_tensor(feats_a, "feats_a", 3)
    check_tensor(feats_b, "feats_b", 3)
    check_floating(feats_a, "feats_a")
    check_floating(feats_b, "feats_b")
    if feats_a.shape[0] != feats_b.shape[0] or feats_a.shape[2] != feats_b.shape[2]:
        raise ValueError(
            "feats_a (B, N, D) and feats_b (B, M, D) must agree in B and D, got "
            f"{tuple(feats_a.shape)} and {tuple(feats_b.shape)}"
        )
    if feats_a.shape[1] < 1 or feats_b.shape[1] < 1:
        raise ValueError("feats_a and feats_b need at least one patch each")
    if feats_a.device != feats_b.device:
        raise ValueError(f"feats_a is on {feats_a.device} but feats_b on {feats_b.device}")


@torch.no_grad()
def cycle_consistent_pairs(
    feats_a: torch.Tensor, feats_b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cycle-consistent patch pairs between the two images of each pair.

    Similarity is the dot product (cosine for L2-normalised features). For patch ``i`` of
    ``a``: ``j = argmax_j sim(a_i, b_j)``, and the pair ``(i, j)`` is cycle-consistent when
    ``argmax_k sim(a_k, b_j) == i`` (a -> b -> a returns to ``i``; i.e. mutual nearest
    neighbours). Ties go to the lowest index. Batched over pairs, no host sync, no gradient.

    Args:
        feats_a: ``(B, N, D)`` patch features of image ``a`` (e.g. RGB) of each pair.
        feats_b: ``(B, M, D)`` patch features of image ``b`` (e.g. IR).

    Returns:
        ``(match, mask)``: ``match`` ``(B, N)`` int64, the nearest ``b`` patch of every ``a``
        patch; ``mask`` ``(B, N)`` bool, True where the cycle returns.

    Example::

        >>> a = torch.eye(3).unsqueeze(0)               # 3 patches, one-hot features
        >>> b = a[:, [2, 0, 1]]                          # the same patches, reordered
        >>> match, mask = cycle_consistent_pairs(a, b)
        >>> match.tolist(), mask.tolist()
        ([[1, 2, 0]], [[True, True, True]])
    """
    _check_patch_feats(feats_a, feats_b)
    sim = torch.bmm(feats_a.float(), feats_b.float().transpose(1, 2))  # (B, N, M)
    match = sim.argmax(dim=2)  # a -> b
    back = sim.argmax(dim=1)  # b -> a, (B, M)
    returned = back.gather(1, match)
    start = torch.arange(feats_a.shape[1], device=feats_a.device)
    return match, returned == start


def cycle_infonce_loss(
    feats_a: torch.Tensor,
    feats_b: torch.Tensor,
    *,
    temperature: float = 0.1,
    weights: tuple[float, float] = (0.5, 0.5),
    negatives: Negatives = "batch",
    pairs: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """InfoNCE that maximises the agreement of cycle-consistent patch pairs.

    For every cycle-consistent pair ``(i, j)`` (:func:`cycle_consistent_pairs`) with
    ``s(x, y) = <x, y> / temperature``::

        l_ab(i) = -log( exp s(a_i, b_j) / sum_{j'} exp s(a_i, b_j') )    # b_j against other b patches
        l_ba(i) = -log( exp s(b_j, a_i) / sum_{i'} exp s(b_j, a_i') )    # a_i against other a patches
        loss    = sum_i mask_i * (w_ab l_ab(i) + w_ba l_ba(i)) / max(1, sum_i mask_i)

    With ``negatives="batch"`` (default) the other patches are the patches of every image of
    the other modality in the batch; with ``"pair"`` only those of the same image pair. Per-pair
    negatives let a CNN solve the task by absolute position alone (zero padding tells it where
    a patch is, and both images share the permutation): on the synthetic demo data the local
    loss fell to 0.004 within 3 epochs with every patch cycle-consistent, while batch negatives
    (same position, other person) keep it informative. Features are used as given:
    L2-normalise them first (the pretrainer does). No consistent pair gives a loss of 0 that
    still back-propagates. No host sync. Memory: an ``(B*N, B*M)`` logit matrix with
    ``"batch"``, ``(B, N, M)`` with ``"pair"``.

    Args:
        feats_a: ``(B, N, D)`` patch features (RGB); feats_b: ``(B, M, D)`` (IR).
        temperature: softmax temperature (> 0).
        weights: ``(w_ab, w_ba)`` of the two directions.
        negatives: ``"batch"`` or ``"pair"``.
        pairs: a precomputed ``(match, mask)`` from :func:`cycle_consistent_pairs`.

    Returns:
        scalar tensor (float32).

    Example::

        >>> a = F.normalize(torch.randn(2, 6, 8), dim=-1)
        >>> loss = cycle_infonce_loss(a, a.clone(), temperature=0.1)
        >>> bool(loss < 0.5)                              # identical features: easy pairs
        True
    """
    _check_patch_feats(feats_a, feats_b)
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    if len(weights) != 2 or any(w < 0 for w in weights):
        raise ValueError(f"weights must be two non-negative numbers (w_ab, w_ba), got {weights!r}")
    if negatives not in ("pair", "batch"):
        raise ValueError(f"negatives must be 'pair' or 'batch', got {negatives!r}")
    match, mask = pairs if pairs is not None else cycle_consistent_pairs(feats_a, feats_b)
    if match.shape != feats_a.shape[:2] or mask.shape != feats_a.shape[:2]:
        raise ValueError(
            f"pairs must be (match, mask) of shape {tuple(feats_a.shape[:2])}, got "
            f"{tuple(match.shape)} and {tuple(mask.shape)}"
        )
    bsz, n, _ = feats_a.shape
    m = feats_b.shape[1]
    a, b = feats_a.float(), feats_b.float()
    with torch.autocast(device_type=a.device.type, enabled=False):
        if negatives == "pair":
            sim = torch.bmm(a, b.transpose(1, 2)) / temperature  # (B, N, M)
            logits_ab = sim.reshape(bsz * n, m)
            target_ab = match.reshape(-1)
            # row r = (pair, i): similarities of b_{match[i]} with every a patch of that pair
            logits_ba = sim.transpose(1, 2).gather(1, match.unsqueeze(2).expand(bsz, n, n))
            logits_ba = logits_ba.reshape(bsz * n, n)
            target_ba = torch.arange(n, device=a.device).repeat(bsz)
        else:
            a_flat, b_flat = a.reshape(bsz * n, -1), b.reshape(bsz * m, -1)
            offsets = torch.arange(bsz, device=a.device).unsqueeze(1)
            target_ab = (match + offsets * m).reshape(-1)
            logits_ab = a_flat @ b_flat.T / temperature  # (BN, BM)
            # row r: the matched b patch of a_r against every a patch (a second matmul is
            # cheaper than gathering rows of the transposed matrix)
            logits_ba = b_flat.index_select(0, target_ab) @ a_flat.T / temperature  # (BN, BN)
            target_ba = torch.arange(bsz * n, device=a.device)
        loss_ab = F.cross_entropy(logits_ab, target_ab, reduction="none")
        loss_ba = F.cross_entropy(logits_ba, target_ba, reduction="none")
        w = mask.reshape(-1).to(loss_ab.dtype)
        per_pair = weights[0] * loss_ab + weights[1] * loss_ba
        return (w * per_pair).sum() / w.sum().clamp(min=1.0)
