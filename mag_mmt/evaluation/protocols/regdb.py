"""RegDB, one split: each direction's queries against the whole other modality.

Both directions (visible-to-thermal, thermal-to-visible) are scored with AGW's
``eval_regdb`` (``rank_metrics(protocol="regdb")``); :func:`~mag_mmt.evaluation.aggregate_splits`
merges the 10 splits.
"""

from __future__ import annotations

from typing import Sequence

import torch

from mag_mmt.data.records import Sample
from mag_mmt.evaluation.features import Distance, distance_matrix
from mag_mmt.evaluation.protocols._trials import Rerank, check_pairs, rerank_inputs, run_trials, split_direction
from mag_mmt.evaluation.results import ProtocolResult

__all__ = ["evaluate_regdb"]


def evaluate_regdb(
    query_feats: torch.Tensor,
    gallery_feats: torch.Tensor,
    query_samples: Sequence[Sample],
    gallery_samples: Sequence[Sample],
    *,
    directions: Sequence[str] = ("visible-to-thermal", "thermal-to-visible"),
    distance: Distance = "euclidean",
    max_rank: int = 20,
    chunk_size: int | None = None,
    rerank: Rerank = None,
) -> dict[str, ProtocolResult]:
    """RegDB, one split: each direction's queries against the whole other modality.

    The queries of a direction are the ``query_samples`` of its query modality, the gallery
    the ``gallery_samples`` of the other modality (RegDB readers put every test image in
    both lists; passing the same features twice is fine). Metric: AGW ``eval_regdb``.
    ``rerank``: ``True`` or a :class:`~mag_mmt.evaluation.ReRanking` re-ranks each direction (k-reciprocal).

    Returns:
        ``{direction: ProtocolResult}`` with one trial each, named
        ``"RegDB visible-to-thermal"`` etc. Merge the 10 splits with
        :func:`~mag_mmt.evaluation.aggregate_splits`.

    Example::

        per_split = []
        for trial in range(1, 11):
            data = read_regdb(root, trial=trial)
            feats = extract_features(model_of_split[trial], data.query, size=(288, 144))
            per_split.append(evaluate_regdb(feats, feats, data.query, data.query))
        print(format_table(aggregate_splits(per_split)))
    """
    check_pairs(query_feats, query_samples, "query")
    check_pairs(gallery_feats, gallery_samples, "gallery")
    out = {}
    for direction in directions:
        qf, qs, gf, gs = split_direction(direction, query_feats, gallery_feats, query_samples, gallery_samples)
        dist = distance_matrix(qf, gf, distance)
        out[direction] = run_trials(
            f"RegDB {direction}",
            dist,
            qs,
            gs,
            shot=None,
            cameras=None,
            trials=1,
            seed=0,
            protocol="regdb",
            max_rank=max_rank,
            chunk_size=chunk_size,
            rerank=rerank_inputs(rerank, qf, gf, distance),
        )
    return out
