"""The functional core: pure tensor functions that the library's modules wrap.

Imports only torch and the standard library (never kornia, numpy or the training code).
One file per concept:

* :mod:`~mag_mmt.functional.distances` -- pairwise / indexed distances, float32 under autocast
* :mod:`~mag_mmt.functional.mining` -- masks from labels x modalities, the anchor rule,
  masked hardest/easiest picks, soft-weighted picks
* :mod:`~mag_mmt.functional.triplet` -- MMT (paper Eq. 1), batch-hard, WRT and ADP triplet losses
* :mod:`~mag_mmt.functional.exchange` -- MAG: box sampling, exchange mask, exchange, partners
* :mod:`~mag_mmt.functional.jigsaw` -- permutation sets, jigsaw shuffle / unshuffle
* :mod:`~mag_mmt.functional.contrastive` -- cycle-consistent patch pairs, patch InfoNCE

Example:
    >>> import torch
    >>> import mag_mmt.functional as MF
    >>> x = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
    >>> labels, modalities = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1])
    >>> MF.multi_masking_triplet_loss(x, labels, modalities, margin=10.5)
    tensor(1.5000)
"""

from __future__ import annotations

from mag_mmt.functional.contrastive import cycle_consistent_pairs, cycle_infonce_loss
from mag_mmt.functional.distances import indexed_distance, mining_scores, paired_distance, pairwise_distance
from mag_mmt.functional.exchange import exchange_mask, match_partners, modality_exchange, sample_exchange_params
from mag_mmt.functional.jigsaw import (
    hamming_distances,
    jigsaw_shuffle,
    jigsaw_unshuffle,
    min_hamming_distance,
    permutation_set,
)
from mag_mmt.functional.mining import (
    MinedTriplets,
    anchor_mask,
    masked_hard_mining,
    mine_chunked,
    pair_masks,
    soft_pick,
    soft_weights,
)
from mag_mmt.functional.triplet import (
    MMTOutput,
    adaptive_weighted_triplet_loss,
    batch_hard_triplet_loss,
    concat_modalities,
    multi_masking_triplet_loss,
    weighted_regularized_triplet_loss,
)

__all__ = [
    # distances
    "pairwise_distance",
    "paired_distance",
    "indexed_distance",
    "mining_scores",
    # mining
    "MinedTriplets",
    "pair_masks",
    "anchor_mask",
    "masked_hard_mining",
    "mine_chunked",
    "soft_weights",
    "soft_pick",
    # triplet losses
    "MMTOutput",
    "multi_masking_triplet_loss",
    "batch_hard_triplet_loss",
    "weighted_regularized_triplet_loss",
    "adaptive_weighted_triplet_loss",
    "concat_modalities",
    # MAG
    "sample_exchange_params",
    "exchange_mask",
    "modality_exchange",
    "match_partners",
    # jigsaw and contrastive (MMGL)
    "permutation_set",
    "hamming_distances",
    "min_hamming_distance",
    "jigsaw_shuffle",
    "jigsaw_unshuffle",
    "cycle_consistent_pairs",
    "cycle_infonce_loss",
]
