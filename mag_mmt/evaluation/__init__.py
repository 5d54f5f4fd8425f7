"""Evaluation: ranking metrics (CMC, mAP, mINP) and the SYSU-MM01 / RegDB / NPU-ReID protocols.

See :mod:`mag_mmt.evaluation.metrics` for the metric conventions (tie order, skipped
queries, AGW compatibility), :mod:`mag_mmt.evaluation.protocols` for the protocols and
:mod:`mag_mmt.evaluation.reranking` for k-reciprocal re-ranking.

Example::

    from mag_mmt.evaluation import extract_features, evaluate_sysu, format_table

    q = extract_features(model, data.query, size=(288, 144), flip=True)
    g = extract_features(model, data.gallery, size=(288, 144), flip=True)
    results = [evaluate_sysu(q, g, data.query, data.gallery, mode=m, shot=s)
               for m in ("all", "indoor") for s in ("single", "multi")]
    print(format_table(results))
"""

from __future__ import annotations

from mag_mmt.evaluation.metrics import PROTOCOLS, RankResult, rank_metrics
from mag_mmt.evaluation.protocols import (
    DIRECTIONS,
    GALLERY_SAMPLINGS,
    SYSU_SEARCH_CAMERAS,
    ProtocolResult,
    aggregate_splits,
    distance_matrix,
    evaluate_cross_modality,
    evaluate_regdb,
    evaluate_sysu,
    extract_features,
    format_table,
    sample_gallery,
)
from mag_mmt.evaluation.reranking import ReRanking, re_ranking

__all__ = [
    "PROTOCOLS",
    "RankResult",
    "rank_metrics",
    "DIRECTIONS",
    "GALLERY_SAMPLINGS",
    "ReRanking",
    "re_ranking",
    "SYSU_SEARCH_CAMERAS",
    "ProtocolResult",
    "aggregate_splits",
    "distance_matrix",
    "evaluate_cross_modality",
    "evaluate_regdb",
    "evaluate_sysu",
    "extract_features",
    "format_table",
    "sample_gallery",
]
