"""NPU-ReID and any manifest dataset: directions x all-/per-scene search x shots.

Each direction's queries are searched against a gallery drawn per trial from the other
modality; a scene search keeps the gallery cameras of one scene (a camera -> scene map,
e.g. ``data.meta["camera_scene"]``). Gallery images under the query's own camera are
removed (``rank_metrics(protocol="same-camera")``).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from mag_mmt.data.records import Sample
from mag_mmt.errors import UserError
from mag_mmt.evaluation.features import Distance, distance_matrix
from mag_mmt.evaluation.gallery import Shot, num_shots, shot_name
from mag_mmt.evaluation.metrics import CameraRule
from mag_mmt.evaluation.protocols._trials import (
    Rerank,
    check_pairs,
    check_trials,
    rerank_inputs,
    run_trials,
    split_direction,
)
from mag_mmt.evaluation.results import ProtocolResult

__all__ = ["evaluate_cross_modality"]


def evaluate_cross_modality(
    query_feats: torch.Tensor,
    gallery_feats: torch.Tensor,
    query_samples: Sequence[Sample],
    gallery_samples: Sequence[Sample],
    *,
    directions: Sequence[str] = ("visible-to-thermal", "thermal-to-visible"),
    camera_scene: Mapping[int, str] | None = None,
    searches: Sequence[str] | None = None,
    shots: Sequence[Shot] = ("single", "multi"),
    trials: int = 10,
    seed: int = 0,
    camera_rule: CameraRule = "same-camera",
    distance: Distance = "euclidean",
    max_rank: int = 20,
    chunk_size: int | None = None,
    name: str = "NPU-ReID",
    rerank: Rerank = None,
) -> dict[str, ProtocolResult]:
    """NPU-ReID style evaluation: directions x searches x shots, random gallery trials.

    For each direction the queries are the ``query_samples`` of the query modality (all of
    them, whatever the search) and the gallery pool the ``gallery_samples`` of the other
    modality. A search restricts the *gallery* cameras: ``"all"`` keeps every camera, a
    scene name (``"indoor"``, ``"outdoor"``) keeps the cameras ``camera_scene`` maps to it
    (as SYSU-MM01's indoor-search and the NPU-ReID paper). Each trial draws ``shot`` images
    per (identity, camera) from the pool with ``default_rng([seed, trial])``. Gallery images
    under the query's own camera are skipped (``camera_rule="same-camera"``; any
    ``rank_metrics`` protocol may be given instead). The CMC is the standard one.

    Args:
        query_feats, gallery_feats: ``(Q, D)`` / ``(P, D)`` features of the samples.
        query_samples, gallery_samples: e.g. ``data.query`` / ``data.gallery`` of
            :func:`mag_mmt.data.manifest.read_manifest`.
        directions: any of ``"visible-to-thermal"``, ``"thermal-to-visible"``.
        camera_scene: camera -> scene name, e.g. ``data.meta["camera_scene"]``.
        searches: ``"all"`` and/or scene names; default ``"all"`` plus every scene of
            ``camera_scene``.
        shots: ``"single"``, ``"multi"`` or counts.
        trials, seed: gallery trials per setting.
        rerank: ``True`` or a :class:`~mag_mmt.evaluation.ReRanking` re-ranks each trial (k-reciprocal).

    Returns:
        ``{"visible-to-thermal/all-search/single-shot": ProtocolResult, ...}``.

    Example::

        data = read_manifest("npu.csv")
        feats = extract_features(model, data.query, size=(224, 224))
        res = evaluate_cross_modality(feats, feats, data.query, data.query,
                                      camera_scene=data.meta["camera_scene"])
        print(format_table(res))
    """
    check_trials(trials)
    check_pairs(query_feats, query_samples, "query")
    check_pairs(gallery_feats, gallery_samples, "gallery")
    for shot in shots:
        num_shots(shot)
    scenes = dict(camera_scene or {})
    if searches is None:
        searches = ["all", *sorted(set(scenes.values()))]
    for search in searches:
        if search != "all" and search not in set(scenes.values()):
            raise UserError(
                f"search {search!r} needs a camera_scene map naming it; scenes known: {sorted(set(scenes.values()))}"
            )
    out: dict[str, ProtocolResult] = {}
    for direction in directions:
        qf, qs, gf, gs = split_direction(direction, query_feats, gallery_feats, query_samples, gallery_samples)
        if any(search != "all" for search in searches):
            unknown = sorted({s.camera for s in gs} - set(scenes))
            if unknown:
                raise UserError(f"{direction}: gallery cameras {unknown} have no scene in camera_scene")
        dist = distance_matrix(qf, gf, distance)
        reranking = rerank_inputs(rerank, qf, gf, distance)
        for search in searches:
            cameras = None if search == "all" else [c for c, sc in scenes.items() if sc == search]
            for shot in shots:
                key = f"{direction}/{search}-search/{shot_name(shot)}"
                out[key] = run_trials(
                    f"{name} {key}",
                    dist,
                    qs,
                    gs,
                    shot=shot,
                    cameras=cameras,
                    trials=trials,
                    seed=seed,
                    protocol=camera_rule,
                    max_rank=max_rank,
                    chunk_size=chunk_size,
                    rerank=reranking,
                )
    return out
