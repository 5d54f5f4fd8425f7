"""The functional core of mag-mmt: plain functions that the ``nn.Module`` classes wrap.

Every name here is defined in its concept's own module and only re-exported here, so there
is one implementation of each idea.
"""

from __future__ import annotations

__all__: list[str] = []

from mag_mmt.distances import indexed_distance, paired_distance, pairwise_distance  # noqa: E402
from mag_mmt.losses import (  # noqa: E402
    MMTOutput,
    batch_hard_triplet_loss,
    concat_modalities,
    masked_hard_mining,
    multi_masking_triplet_loss,
    weighted_regularized_triplet_loss,
)

__all__ += [
    "MMTOutput",
    "pairwise_distance",
    "paired_distance",
    "indexed_distance",
    "multi_masking_triplet_loss",
    "batch_hard_triplet_loss",
    "weighted_regularized_triplet_loss",
    "masked_hard_mining",
    "concat_modalities",
]

from mag_mmt.augment import (  # noqa: E402
    exchange_mask,
    match_partners,
    modality_exchange,
    sample_exchange_params,
)

__all__ += ["modality_exchange", "sample_exchange_params", "exchange_mask", "match_partners"]

from mag_mmt.pretrain import (  # noqa: E402
    cycle_consistent_pairs,
    cycle_infonce_loss,
    jigsaw_shuffle,
    jigsaw_unshuffle,
    permutation_set,
)

__all__ += [
    "permutation_set",
    "jigsaw_shuffle",
    "jigsaw_unshuffle",
    "cycle_consistent_pairs",
    "cycle_infonce_loss",
]
