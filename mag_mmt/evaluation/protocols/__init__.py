"""Evaluation protocols, one file each: SYSU-MM01, RegDB, NPU-ReID (and any manifest dataset).

Every protocol takes features extracted **once** (:func:`~mag_mmt.evaluation.extract_features`)
with the :class:`~mag_mmt.data.records.Sample` records they belong to, computes one
query-by-pool distance matrix per search direction, and then only selects gallery columns
per trial (:mod:`mag_mmt.evaluation.gallery`): a trial costs a column gather and one
:func:`~mag_mmt.evaluation.rank_metrics` call.

* :func:`evaluate_sysu` (``sysu.py``): thermal queries against a visible gallery,
  all-/indoor-search x single-/multi-shot, AGW's exact galleries on request.
* :func:`evaluate_regdb` (``regdb.py``): one split, both :data:`DIRECTIONS`, the whole other
  modality as gallery; :func:`~mag_mmt.evaluation.aggregate_splits` merges the 10 splits.
* :func:`evaluate_cross_modality` (``cross_modality.py``): NPU-ReID and manifest datasets,
  directions x all-/per-scene search x shots.
* ``_trials.py``: what they share (input checks, direction split, the trial runner).

``rerank=True`` (k1=20, k2=6, lambda=0.3) or ``rerank=ReRanking(...)`` re-ranks each
trial's distances k-reciprocally over that trial's queries and gallery
(:mod:`mag_mmt.evaluation.reranking`). Each protocol returns
:class:`~mag_mmt.evaluation.ProtocolResult` (per trial, mean and standard deviation,
``.table()``) or a dict of them (:mod:`mag_mmt.evaluation.results`).
"""

from __future__ import annotations

from mag_mmt.evaluation.protocols._trials import DIRECTIONS
from mag_mmt.evaluation.protocols.cross_modality import evaluate_cross_modality
from mag_mmt.evaluation.protocols.dataset import evaluate_dataset
from mag_mmt.evaluation.protocols.regdb import evaluate_regdb
from mag_mmt.evaluation.protocols.sysu import SYSU_SEARCH_CAMERAS, evaluate_sysu

__all__ = ["evaluate_dataset", "evaluate_sysu", "evaluate_regdb", "evaluate_cross_modality", "DIRECTIONS", "SYSU_SEARCH_CAMERAS"]
