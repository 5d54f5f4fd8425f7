"""Evaluation: ranking metrics (CMC, mAP, mINP) and the SYSU-MM01 / RegDB / NPU-ReID protocols.

One file per idea:

* ``metrics.py``: :func:`rank_metrics` and its conventions (tie order, skipped queries,
  AGW compatibility).
* ``features.py``: :func:`extract_features` (model -> ``(N, D)``) and :func:`distance_matrix`.
* ``gallery.py``: :func:`sample_gallery`, the per-trial gallery draw (single-/multi-shot, AGW's).
* ``protocols/``: :func:`evaluate_sysu`, :func:`evaluate_regdb`,
  :func:`evaluate_cross_modality` (NPU-ReID, manifests), one file each, and
  :func:`evaluate_dataset`, which picks them by the dataset's ``protocol``.
* ``reranking.py``: k-reciprocal re-ranking.
* ``results.py``: :class:`ProtocolResult`, :func:`format_table`, :func:`aggregate_splits`.

Example::

    from mag_mmt.evaluation import extract_features, evaluate_sysu, format_table

    q = extract_features(model, data.query, size=(288, 144), flip=True)
    g = extract_features(model, data.gallery, size=(288, 144), flip=True)
    results = [evaluate_sysu(q, g, data.query, data.gallery, mode=m, shot=s)
               for m in ("all", "indoor") for s in ("single", "multi")]
    print(format_table(results))
"""

from __future__ import annotations

from mag_mmt.evaluation.features import distance_matrix, extract_features
from mag_mmt.evaluation.gallery import GALLERY_SAMPLINGS, sample_gallery
from mag_mmt.evaluation.metrics import PROTOCOLS, RankResult, rank_metrics
from mag_mmt.evaluation.protocols import (
    DIRECTIONS,
    SYSU_SEARCH_CAMERAS,
    evaluate_cross_modality,
    evaluate_dataset,
    evaluate_regdb,
    evaluate_sysu,
)
from mag_mmt.evaluation.reranking import ReRanking, re_ranking
from mag_mmt.evaluation.results import ProtocolResult, aggregate_splits, format_table

__all__ = [
    # metrics.py
    "rank_metrics",
    "RankResult",
    "PROTOCOLS",
    # features.py
    "extract_features",
    "distance_matrix",
    # gallery.py
    "sample_gallery",
    "GALLERY_SAMPLINGS",
    # protocols/
    "evaluate_dataset",
    "evaluate_sysu",
    "evaluate_regdb",
    "evaluate_cross_modality",
    "DIRECTIONS",
    "SYSU_SEARCH_CAMERAS",
    # reranking.py
    "ReRanking",
    "re_ranking",
    # results.py
    "ProtocolResult",
    "format_table",
    "aggregate_splits",
]
