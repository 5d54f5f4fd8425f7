"""What the protocols share: input checks, the split by search direction, re-ranking inputs
and the trial runner (one gallery per trial, one :func:`~mag_mmt.evaluation.rank_metrics` call each).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch

from mag_mmt.data.records import Sample
from mag_mmt.errors import UserError
from mag_mmt.evaluation.features import Distance, distance_matrix
from mag_mmt.evaluation.gallery import GallerySampling, Shot, sample_gallery
from mag_mmt.evaluation.metrics import CameraRule, rank_metrics
from mag_mmt.evaluation.reranking import ReRanking, re_ranking
from mag_mmt.evaluation.results import ProtocolResult
from mag_mmt.modalities import MODALITY_NAMES, THERMAL, VISIBLE

#: search directions, query modality first
DIRECTIONS: dict[str, int] = {"visible-to-thermal": VISIBLE, "thermal-to-visible": THERMAL}

Rerank = ReRanking | bool | None


def check_trials(trials: int) -> None:
    """Reject a ``trials`` that is not a positive int."""
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise UserError(f"trials must be a positive int, got {trials!r}")


def check_pairs(feats: torch.Tensor, samples: Sequence[Sample], name: str) -> None:
    """Check ``feats`` is ``(len(samples), D)`` and finite; errors name the first bad sample."""
    if not isinstance(feats, torch.Tensor) or feats.dim() != 2:
        shape = tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
        raise UserError(f"{name}_feats must be a 2-D tensor (N, D), got {shape}")
    if feats.shape[0] != len(samples):
        raise UserError(
            f"{name}_feats has {feats.shape[0]} rows but there are {len(samples)} {name} samples"
        )
    if feats.is_floating_point():
        bad = (~torch.isfinite(feats).all(dim=1)).nonzero().flatten()
        if bad.numel():
            first = samples[int(bad[0])]
            raise UserError(
                f"{name}_feats holds NaN or infinite values in {bad.numel()} of {feats.shape[0]} rows, first for "
                f"{first.path!r} (identity {first.identity}); did training diverge? (check the loss in the "
                "training log)"
            )


def split_direction(
    direction: str,
    query_feats: torch.Tensor,
    gallery_feats: torch.Tensor,
    query_samples: Sequence[Sample],
    gallery_samples: Sequence[Sample],
) -> tuple[torch.Tensor, list[Sample], torch.Tensor, list[Sample]]:
    """The query rows of ``direction``'s query modality and the gallery rows of the other.

    Returns ``(query_feats, query_samples, gallery_feats, gallery_samples)``, the gallery
    features on the query features' device.
    """
    if direction not in DIRECTIONS:
        raise UserError(f"direction must be one of {tuple(DIRECTIONS)}, got {direction!r}")
    qm = DIRECTIONS[direction]
    qi = [i for i, s in enumerate(query_samples) if s.modality == qm]
    gi = [i for i, s in enumerate(gallery_samples) if s.modality == 1 - qm]
    if not qi:
        raise UserError(f"{direction}: no {MODALITY_NAMES[qm]} query sample")
    if not gi:
        raise UserError(f"{direction}: no {MODALITY_NAMES[1 - qm]} gallery sample")
    qf = query_feats.index_select(0, torch.tensor(qi, device=query_feats.device))
    gf = gallery_feats.index_select(0, torch.tensor(gi, device=gallery_feats.device))
    return qf, [query_samples[i] for i in qi], gf.to(qf.device), [gallery_samples[i] for i in gi]


def rerank_inputs(
    rerank: Rerank, query_feats: torch.Tensor, gallery_feats: torch.Tensor, distance: Distance
) -> tuple[ReRanking, torch.Tensor, torch.Tensor] | None:
    """``None`` or (parameters, query-query, pool-pool distances) for :func:`run_trials`."""
    if rerank is None or rerank is False:
        return None
    params = ReRanking() if rerank is True else rerank
    if not isinstance(params, ReRanking):
        raise UserError(f"rerank must be True, False, None or a ReRanking, got {rerank!r}")
    return (params, distance_matrix(query_feats, query_feats, distance),
            distance_matrix(gallery_feats, gallery_feats, distance))


def _arrays(samples: Sequence[Sample], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.tensor([s.identity for s in samples], dtype=torch.long, device=device)
    cams = torch.tensor([s.camera for s in samples], dtype=torch.long, device=device)
    return ids, cams


def run_trials(
    name: str,
    dist: torch.Tensor,
    query: Sequence[Sample],
    gallery_pool: Sequence[Sample],
    *,
    shot: Shot | None,
    cameras: Iterable[int] | None,
    trials: int,
    seed: int,
    protocol: CameraRule,
    max_rank: int,
    chunk_size: int | None,
    sampling: GallerySampling = "default",
    rerank: tuple[ReRanking, torch.Tensor, torch.Tensor] | None = None,
) -> ProtocolResult:
    """``trials`` galleries drawn from ``gallery_pool`` (``shot=None``: the whole pool, once);
    ``rerank``: (parameters, query-query, pool-pool distances) re-rank each trial's columns."""
    device = dist.device
    name += " (re-ranked)" if rerank is not None else ""
    q_ids, q_cams = _arrays(query, device)
    g_ids, g_cams = _arrays(gallery_pool, device)
    results = []
    for trial in range(trials if shot is not None else 1):
        if shot is None:
            cams = None if cameras is None else set(cameras)
            idx = np.array([i for i, s in enumerate(gallery_pool) if cams is None or s.camera in cams])
        else:
            idx = sample_gallery(gallery_pool, shot, cameras=cameras, trial=trial, seed=seed, sampling=sampling)
        if idx.size == 0:
            raise UserError(f"{name}: the gallery is empty (cameras {sorted(cameras or [])})")
        cols = torch.from_numpy(idx).to(device)
        trial_dist = dist.index_select(1, cols)
        if rerank is not None:
            params, qq, gg = rerank
            trial_dist = re_ranking(trial_dist, qq, gg.index_select(0, cols).index_select(1, cols),
                                    params.k1, params.k2, params.lambda_value)
        try:
            result = rank_metrics(
                trial_dist,
                q_ids,
                g_ids[cols],
                q_cams,
                g_cams[cols],
                protocol=protocol,
                max_rank=max_rank,
                chunk_size=chunk_size,
            )
        except ValueError as exc:  # e.g. no query has a match in this setting's gallery
            raise UserError(f"{name}, trial {trial}: {exc}") from exc
        results.append(result)
    return ProtocolResult(name, results)
