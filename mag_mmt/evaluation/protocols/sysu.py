"""SYSU-MM01: thermal queries (cameras 3, 6) against a visible gallery drawn per trial.

All-search uses gallery cameras 1, 2, 4, 5, indoor-search 1, 2; single-shot draws 1 image
per identity and camera, multi-shot 10 (see :mod:`mag_mmt.evaluation.gallery`). Camera-2
images are removed for camera-3 queries (``rank_metrics(protocol="sysu")``, AGW's
``eval_sysu``).
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch

from mag_mmt.data.records import Sample
from mag_mmt.errors import UserError
from mag_mmt.evaluation.features import Distance, distance_matrix
from mag_mmt.evaluation.gallery import GallerySampling, Shot, check_sampling, num_shots, shot_name
from mag_mmt.evaluation.protocols._trials import Rerank, check_pairs, check_trials, rerank_inputs, run_trials
from mag_mmt.evaluation.results import ProtocolResult
from mag_mmt.modalities import MODALITY_NAMES, THERMAL, VISIBLE

__all__ = ["evaluate_sysu", "SYSU_SEARCH_CAMERAS", "SYSU_QUERY_CAMERAS"]

#: SYSU-MM01 gallery (visible) cameras per search mode
SYSU_SEARCH_CAMERAS: dict[str, tuple[int, ...]] = {"all": (1, 2, 4, 5), "indoor": (1, 2)}
#: SYSU-MM01 query (thermal) cameras
SYSU_QUERY_CAMERAS: tuple[int, ...] = (3, 6)


def evaluate_sysu(
    query_feats: torch.Tensor,
    gallery_feats: torch.Tensor,
    query_samples: Sequence[Sample],
    gallery_samples: Sequence[Sample],
    *,
    mode: Literal["all", "indoor"] = "all",
    shot: Shot = "single",
    trials: int = 10,
    seed: int = 0,
    distance: Distance = "euclidean",
    max_rank: int = 20,
    chunk_size: int | None = None,
    gallery_sampling: GallerySampling = "default",
    rerank: Rerank = None,
) -> ProtocolResult:
    """SYSU-MM01 thermal-to-visible evaluation over ``trials`` random galleries.

    Args:
        query_feats: ``(Q, D)`` features of ``query_samples`` (thermal, cameras 3 and 6).
        gallery_feats: ``(P, D)`` features of the gallery pool ``gallery_samples`` (visible
            images; those outside the search cameras are ignored).
        query_samples, gallery_samples: the records (``data.query`` / ``data.gallery`` of
            :func:`mag_mmt.data.sysu.read_sysu`).
        mode: ``"all"`` (gallery cameras 1, 2, 4, 5) or ``"indoor"`` (1, 2).
        shot: ``"single"`` (1 image per identity per camera), ``"multi"`` (10) or a count.
        trials, seed: trial ``t`` draws its gallery with ``default_rng([seed, t])``.
        distance: ``"euclidean"`` or ``"cosine"`` (ranks as AGW's ``test.py``, which sorts by
            the dot product of L2-normalised features).
        max_rank, chunk_size: passed to :func:`~mag_mmt.evaluation.rank_metrics` (``protocol="sysu"``).
        gallery_sampling: ``"default"`` or ``"agw"`` (AGW's exact galleries, single-shot,
            ``seed=0``; see :func:`~mag_mmt.evaluation.sample_gallery`).
        rerank: ``True`` or a :class:`~mag_mmt.evaluation.ReRanking` to re-rank each trial (k-reciprocal).

    Returns:
        :class:`~mag_mmt.evaluation.ProtocolResult` named ``"SYSU-MM01 {mode}-search {shot}-shot"``.

    Raises:
        UserError: a query that is not a thermal image from camera 3 or 6 (named), feature
            rows that do not match the samples or hold NaN (the first sample named), an
            unknown mode or shot.

    Example::

        data = read_sysu("/data/SYSU-MM01")
        q = extract_features(model, data.query, size=(288, 144))
        g = extract_features(model, data.gallery, size=(288, 144))
        for mode in ("all", "indoor"):
            print(evaluate_sysu(q, g, data.query, data.gallery, mode=mode).table())
    """
    if mode not in SYSU_SEARCH_CAMERAS:
        raise UserError(f"mode must be 'all' or 'indoor', got {mode!r}")
    num_shots(shot)
    check_trials(trials)
    check_sampling(gallery_sampling, shot, seed)
    check_pairs(query_feats, query_samples, "query")
    check_pairs(gallery_feats, gallery_samples, "gallery")
    for s in query_samples:
        if s.modality != THERMAL or s.camera not in SYSU_QUERY_CAMERAS:
            raise UserError(
                f"SYSU-MM01 queries must be thermal images from cameras 3 and 6, got {s.path!r} "
                f"({MODALITY_NAMES.get(s.modality, s.modality)}, camera {s.camera})"
            )
    cameras = SYSU_SEARCH_CAMERAS[mode]
    pool_idx = [i for i, s in enumerate(gallery_samples) if s.camera in cameras and s.modality == VISIBLE]
    if not pool_idx:
        raise UserError(f"SYSU-MM01: no visible gallery image from cameras {cameras}")
    pool = [gallery_samples[i] for i in pool_idx]
    pool_feats = gallery_feats.index_select(0, torch.tensor(pool_idx, device=gallery_feats.device))
    dist = distance_matrix(query_feats, pool_feats.to(query_feats.device), distance)
    return run_trials(
        f"SYSU-MM01 {mode}-search {shot_name(shot)}" + (" (AGW galleries)" if gallery_sampling == "agw" else ""),
        dist,
        query_samples,
        pool,
        shot=shot,
        cameras=None,
        trials=trials,
        seed=seed,
        protocol="sysu",
        max_rank=max_rank,
        chunk_size=chunk_size,
        sampling=gallery_sampling,
        rerank=rerank_inputs(rerank, query_feats, pool_feats.to(query_feats.device), distance),
    )
