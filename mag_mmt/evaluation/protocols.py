"""Evaluation protocols: SYSU-MM01, RegDB, NPU-ReID (and any manifest dataset).

Every protocol takes features that were extracted **once** (see :func:`extract_features`)
together with the :class:`~mag_mmt.data.records.Sample` records they belong to, computes one
query-by-pool distance matrix per search direction, and then only selects gallery columns
per trial: random gallery trials cost a column gather and a :func:`rank_metrics` call each.

* :func:`evaluate_sysu` -- thermal queries (cameras 3, 6) against a visible gallery sampled
  per trial from the pool: all-search (cameras 1, 2, 4, 5) or indoor-search (1, 2),
  single-shot (1 random image per identity per camera) or multi-shot (10); camera-2 gallery
  images are skipped for camera-3 queries (``rank_metrics(protocol="sysu")``).
* :func:`evaluate_regdb` -- one split's test set, visible-to-thermal and thermal-to-visible,
  the whole other modality as gallery; :func:`aggregate_splits` merges the 10 splits.
* :func:`evaluate_cross_modality` -- NPU-ReID and any manifest dataset: both directions x
  all-/per-scene search (a camera -> scene map, e.g. ``data.meta["camera_scene"]``) x
  single-/multi-shot gallery, gallery images under the query's own camera skipped.

Gallery trials are seeded by ``numpy.random.default_rng([seed, trial])``: trial ``t`` draws
the same gallery on every machine and whatever other trials run. Groups (identity, camera)
are visited in ascending order and images inside a group keep their order in the pool, so
the draw depends on the pool's order only within a group (the readers sort by file name).
``gallery_sampling="agw"`` (SYSU-MM01, single-shot) draws instead exactly the galleries of
AGW's ``test.py`` (``process_gallery_sysu``: ``random.seed(trial)``, one ``random.choice``
per identity and camera folder): see :func:`sample_gallery`.

Every protocol takes ``rerank=ReRanking(...)`` (or ``True`` for k1=20, k2=6, lambda=0.3):
each trial's query-gallery distances are then k-reciprocally re-ranked
(:mod:`mag_mmt.evaluation.reranking`) over that trial's queries and gallery.

Each protocol returns :class:`ProtocolResult` (one :class:`RankResult` per trial, mean and
standard deviation over trials, ``.table()``); :func:`format_table` prints several like the
papers' tables.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

import numpy as np
import torch

from mag_mmt.data.records import MODALITY_NAMES, THERMAL, VISIBLE, Sample
from mag_mmt.distances import pairwise_distance
from mag_mmt.errors import UserError
from mag_mmt.evaluation.metrics import CameraRule, RankResult, rank_metrics
from mag_mmt.evaluation.reranking import ReRanking, re_ranking

__all__ = [
    "ProtocolResult",
    "format_table",
    "distance_matrix",
    "sample_gallery",
    "evaluate_sysu",
    "evaluate_regdb",
    "aggregate_splits",
    "evaluate_cross_modality",
    "extract_features",
    "SYSU_SEARCH_CAMERAS",
    "DIRECTIONS",
    "GALLERY_SAMPLINGS",
]

#: SYSU-MM01 gallery (visible) cameras per search mode
SYSU_SEARCH_CAMERAS: dict[str, tuple[int, ...]] = {"all": (1, 2, 4, 5), "indoor": (1, 2)}
SYSU_QUERY_CAMERAS: tuple[int, ...] = (3, 6)
#: search directions, query modality first
DIRECTIONS: dict[str, int] = {"visible-to-thermal": VISIBLE, "thermal-to-visible": THERMAL}
#: gallery images per (identity, camera) for the named shots
SHOTS: dict[str, int] = {"single": 1, "multi": 10}

Shot = Literal["single", "multi"] | int
Distance = Literal["euclidean", "cosine"]
GallerySampling = Literal["default", "agw"]
#: gallery draws: ours (numpy, seeded per trial) and AGW's ``process_gallery_sysu``
GALLERY_SAMPLINGS: tuple[str, ...] = ("default", "agw")
Rerank = ReRanking | bool | None


# --------------------------------------------------------------------------- results


@dataclass
class ProtocolResult:
    """Results of one protocol setting over its trials.

    Attributes:
        name: the setting, e.g. ``"SYSU-MM01 all-search single-shot"``.
        trials: one :class:`RankResult` per trial (or per split).

    Means and standard deviations are over trials; the standard deviation is the sample
    one (``ddof=1``), 0 for a single trial. CMC curves of trials with different lengths
    (tiny galleries) are cut to the shortest.
    """

    name: str
    trials: list[RankResult]

    def __post_init__(self) -> None:
        if not self.trials:
            raise UserError(f"{self.name}: a ProtocolResult needs at least one trial")

    def _cmcs(self) -> np.ndarray:
        length = min(len(t.cmc) for t in self.trials)
        return np.stack([t.cmc[:length] for t in self.trials])

    @staticmethod
    def _std(values: np.ndarray) -> np.ndarray:
        if values.shape[0] < 2:
            return np.zeros_like(values[0], dtype=np.float64)
        return values.std(axis=0, ddof=1)

    @property
    def cmc(self) -> np.ndarray:
        """``(L,)`` mean CMC over trials."""
        return self._cmcs().mean(axis=0)

    @property
    def cmc_std(self) -> np.ndarray:
        return self._std(self._cmcs())

    @property
    def mAP(self) -> float:
        return float(np.mean([t.mAP for t in self.trials]))

    @property
    def mAP_std(self) -> float:
        return float(self._std(np.array([t.mAP for t in self.trials])))

    @property
    def mINP(self) -> float:
        return float(np.mean([t.mINP for t in self.trials]))

    @property
    def mINP_std(self) -> float:
        return float(self._std(np.array([t.mINP for t in self.trials])))

    def summary(self, ranks: Iterable[int] = (1, 10, 20)) -> dict[str, tuple[float, float]]:
        """``{"rank-1": (mean, std), ..., "mAP": ..., "mINP": ...}`` as fractions.

        Ranks beyond the CMC length are left out.
        """
        cmc, std = self.cmc, self.cmc_std
        out = {f"rank-{k}": (float(cmc[k - 1]), float(std[k - 1])) for k in ranks if 1 <= k <= len(cmc)}
        out["mAP"] = (self.mAP, self.mAP_std)
        out["mINP"] = (self.mINP, self.mINP_std)
        return out

    def table(self, ranks: Iterable[int] = (1, 10, 20), std: bool = True) -> str:
        """This result as a one-row table (see :func:`format_table`)."""
        return format_table([self], ranks=ranks, std=std)

    @classmethod
    def merge(cls, results: Sequence["ProtocolResult"], name: str | None = None) -> "ProtocolResult":
        """One result holding the trials of all ``results`` (e.g. the 10 RegDB splits)."""
        if not results:
            raise UserError("merge needs at least one ProtocolResult")
        trials = [t for r in results for t in r.trials]
        return cls(name if name is not None else results[0].name, trials)

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={m:.4f}+-{s:.4f}" for k, (m, s) in self.summary().items())
        return f"ProtocolResult({self.name!r}, trials={len(self.trials)}, {body})"


def format_table(
    results: Sequence[ProtocolResult] | Mapping[str, ProtocolResult],
    ranks: Iterable[int] = (1, 10, 20),
    std: bool = True,
) -> str:
    """A plain-text table like the papers': one row per setting, percentages.

    Columns ``Rank-1``, ``Rank-10``, ``Rank-20`` (``ranks``), ``mAP``, ``mINP``; cells are
    ``mean +- std`` over trials (``std=False``: mean only). A mapping's keys name the rows.

    Example:
        >>> import numpy as np
        >>> from mag_mmt.evaluation import ProtocolResult, rank_metrics, format_table
        >>> r = rank_metrics(np.array([[0.1, 0.9]]), [1], [1, 2], protocol="regdb")
        >>> print(format_table({"toy": ProtocolResult("toy", [r])}, ranks=(1, 2), std=False))
        Setting | Rank-1 | Rank-2 |    mAP |   mINP
        ------- | ------ | ------ | ------ | ------
        toy     | 100.00 | 100.00 | 100.00 | 100.00
    """
    rows = list(results.items()) if isinstance(results, Mapping) else [(r.name, r) for r in results]
    ranks = list(ranks)
    header = ["Setting", *[f"Rank-{k}" for k in ranks], "mAP", "mINP"]
    body = []
    for name, result in rows:
        summary = result.summary(ranks)
        cells = [name]
        for key in [f"rank-{k}" for k in ranks] + ["mAP", "mINP"]:
            if key not in summary:
                cells.append("-")
                continue
            mean, dev = summary[key]
            cells.append(f"{100 * mean:.2f} +- {100 * dev:.2f}" if std else f"{100 * mean:.2f}")
        body.append(cells)
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return " | ".join([first, *rest])

    sep = " | ".join("-" * w for w in widths)
    return "\n".join([line(header), sep, *[line(r) for r in body]])


# --------------------------------------------------------------------------- helpers


def distance_matrix(
    query_feats: torch.Tensor,
    gallery_feats: torch.Tensor,
    distance: Distance = "euclidean",
    chunk_size: int = 4096,
) -> torch.Tensor:
    """``(Q, G)`` distances between query and gallery features, chunked over queries.

    Args:
        query_feats: ``(Q, D)`` floating.
        gallery_feats: ``(G, D)`` floating, same device.
        distance: ``"euclidean"`` or ``"cosine"`` (``1 - cos``: the features are
            L2-normalised first; ranks like AGW's ``-q @ g.T`` on normalised features).
        chunk_size: query rows per matmul.

    Returns:
        ``(Q, G)`` float32 (float64 for float64 features), no autograd graph. Uses
        :func:`mag_mmt.distances.pairwise_distance`, so the conventions are the library's.

    Example:
        >>> import torch
        >>> distance_matrix(torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0], [0.0, 1.0]]))
        tensor([[5., 1.]])
    """
    for name, x in (("query_feats", query_feats), ("gallery_feats", gallery_feats)):
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or not x.is_floating_point():
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise UserError(f"{name} must be a 2-D floating tensor (N, D), got {shape}")
    if query_feats.shape[1] != gallery_feats.shape[1]:
        raise UserError(
            f"query_feats and gallery_feats must have the same feature size, got "
            f"{query_feats.shape[1]} and {gallery_feats.shape[1]}"
        )
    if distance not in ("euclidean", "cosine"):
        raise UserError(f"distance must be 'euclidean' or 'cosine', got {distance!r}")
    with torch.no_grad():
        parts = [
            pairwise_distance(query_feats[i : i + chunk_size], gallery_feats, distance=distance)
            for i in range(0, query_feats.shape[0], chunk_size)
        ]
    if not parts:
        return query_feats.new_zeros(0, gallery_feats.shape[0])
    return torch.cat(parts)


def _num_shots(shot: Shot) -> int:
    if isinstance(shot, str):
        if shot not in SHOTS:
            raise UserError(f"shot must be 'single', 'multi' or a positive int, got {shot!r}")
        return SHOTS[shot]
    if isinstance(shot, bool) or not isinstance(shot, int) or shot < 1:
        raise UserError(f"shot must be 'single', 'multi' or a positive int, got {shot!r}")
    return shot


def _shot_name(shot: Shot) -> str:
    return f"{shot}-shot"


def sample_gallery(
    samples: Sequence[Sample],
    shot: Shot = "single",
    *,
    cameras: Iterable[int] | None = None,
    trial: int = 0,
    seed: int = 0,
    sampling: GallerySampling = "default",
) -> np.ndarray:
    """Indices into ``samples`` of one random gallery: ``shot`` images per (identity, camera).

    Args:
        samples: the gallery pool.
        shot: ``"single"`` (1), ``"multi"`` (10) or a count; a group with fewer images
            contributes all of them.
        cameras: keep only these cameras (``None``: all).
        trial, seed: the draw uses ``numpy.random.default_rng([seed, trial])``.
        sampling: ``"default"`` (the draw above) or ``"agw"``: AGW's ``process_gallery_sysu``
            (``data_manager.py``) for trial ``t``, i.e. ``random.seed(t)`` then one
            ``random.choice`` over the files of each (identity, camera) group, sorted by file
            name, groups in the order of AGW's loops (identity as a 4-digit string, then
            camera). Single-shot only (AGW has no multi-shot gallery: other shots raise
            :class:`~mag_mmt.errors.UserError`) and ``seed`` must be 0. Given the pool of the
            released SYSU-MM01 folders (only image files in them, as the reader reads) and a
            mode's cameras, it picks the images AGW's ``test.py`` picks, trial for trial.

    Returns:
        ``int64`` indices, ascending.

    Example:
        >>> from mag_mmt.data.records import Sample
        >>> pool = [Sample(f"{i}", i // 4, 1 + i % 2, 0) for i in range(8)]
        >>> sample_gallery(pool, "single", trial=0).tolist() == sample_gallery(pool, "single", trial=0).tolist()
        True
        >>> len(sample_gallery(pool, "single")), len(sample_gallery(pool, "multi"))
        (4, 8)
    """
    count = _num_shots(shot)
    if isinstance(trial, bool) or not isinstance(trial, int) or trial < 0:
        raise UserError(f"trial must be a non-negative int, got {trial!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"seed must be a non-negative int, got {seed!r}")
    _check_sampling(sampling, shot, seed)
    allowed = None if cameras is None else set(int(c) for c in cameras)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, s in enumerate(samples):
        if allowed is None or s.camera in allowed:
            groups.setdefault((s.identity, s.camera), []).append(i)
    if sampling == "agw":
        draw = random.Random(trial)  # AGW: random.seed(trial) before its loops
        picks = [
            draw.choice(sorted(groups[key], key=lambda i: os.path.basename(samples[i].path)))
            for key in sorted(groups, key=lambda k: (f"{k[0]:04d}", k[1]))
        ]
        return np.array(sorted(picks), dtype=np.int64)
    rng = np.random.default_rng([seed, trial])
    chosen: list[int] = []
    for key in sorted(groups):
        members = groups[key]
        if count >= len(members):
            chosen.extend(members)
        else:
            picks = rng.choice(len(members), size=count, replace=False)
            chosen.extend(members[j] for j in picks)
    return np.array(sorted(chosen), dtype=np.int64)


def _check_sampling(sampling: str, shot: Shot, seed: int) -> None:
    if sampling not in GALLERY_SAMPLINGS:
        raise UserError(f"gallery_sampling must be one of {GALLERY_SAMPLINGS}, got {sampling!r}")
    if sampling == "agw" and _num_shots(shot) != 1:
        raise UserError(
            f"gallery_sampling='agw' reproduces AGW's single-shot SYSU-MM01 galleries; AGW has no "
            f"multi-shot gallery, got shot={shot!r}"
        )
    if sampling == "agw" and seed != 0:
        raise UserError(f"gallery_sampling='agw' seeds trial t with random.seed(t) as AGW does; seed must be 0, got {seed}")


def _rerank_inputs(
    rerank: Rerank, query_feats: torch.Tensor, gallery_feats: torch.Tensor, distance: Distance
) -> tuple[ReRanking, torch.Tensor, torch.Tensor] | None:
    """``None`` or (parameters, query-query, pool-pool distances) for :func:`_run_trials`."""
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


def _check_pairs(feats: torch.Tensor, samples: Sequence[Sample], name: str) -> None:
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


def _run_trials(
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


def _check_trials(trials: int) -> None:
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise UserError(f"trials must be a positive int, got {trials!r}")


# --------------------------------------------------------------------------- protocols


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
        max_rank, chunk_size: passed to :func:`rank_metrics` (``protocol="sysu"``).
        gallery_sampling: ``"default"`` or ``"agw"`` (AGW's exact galleries, single-shot,
            ``seed=0``; see :func:`sample_gallery`).
        rerank: ``True`` or a :class:`ReRanking` to re-rank each trial (k-reciprocal).

    Returns:
        :class:`ProtocolResult` named ``"SYSU-MM01 {mode}-search {shot}-shot"``.

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
    _num_shots(shot)
    _check_trials(trials)
    _check_sampling(gallery_sampling, shot, seed)
    _check_pairs(query_feats, query_samples, "query")
    _check_pairs(gallery_feats, gallery_samples, "gallery")
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
    return _run_trials(
        f"SYSU-MM01 {mode}-search {_shot_name(shot)}" + (" (AGW galleries)" if gallery_sampling == "agw" else ""),
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
        rerank=_rerank_inputs(rerank, query_feats, pool_feats.to(query_feats.device), distance),
    )


def _split_direction(
    direction: str,
    query_feats: torch.Tensor,
    gallery_feats: torch.Tensor,
    query_samples: Sequence[Sample],
    gallery_samples: Sequence[Sample],
) -> tuple[torch.Tensor, list[Sample], torch.Tensor, list[Sample]]:
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
    ``rerank``: ``True`` or a :class:`ReRanking` re-ranks each direction (k-reciprocal).

    Returns:
        ``{direction: ProtocolResult}`` with one trial each, named
        ``"RegDB visible-to-thermal"`` etc. Merge the 10 splits with
        :func:`aggregate_splits`.

    Example::

        per_split = []
        for trial in range(1, 11):
            data = read_regdb(root, trial=trial)
            feats = extract_features(model_of_split[trial], data.query, size=(288, 144))
            per_split.append(evaluate_regdb(feats, feats, data.query, data.query))
        print(format_table(aggregate_splits(per_split)))
    """
    _check_pairs(query_feats, query_samples, "query")
    _check_pairs(gallery_feats, gallery_samples, "gallery")
    out = {}
    for direction in directions:
        qf, qs, gf, gs = _split_direction(direction, query_feats, gallery_feats, query_samples, gallery_samples)
        dist = distance_matrix(qf, gf, distance)
        out[direction] = _run_trials(
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
            rerank=_rerank_inputs(rerank, qf, gf, distance),
        )
    return out


def aggregate_splits(per_split: Sequence[Mapping[str, ProtocolResult]]) -> dict[str, ProtocolResult]:
    """Merge per-split results (e.g. RegDB's 10 splits) into one result per setting.

    Every split must hold the same settings; the trials of a setting are concatenated in
    split order, so means and standard deviations are over splits.
    """
    if not per_split:
        raise UserError("aggregate_splits needs at least one split")
    keys = list(per_split[0])
    for i, split in enumerate(per_split):
        if list(split) != keys:
            raise UserError(f"split {i} has settings {list(split)}, expected {keys}")
    return {k: ProtocolResult.merge([split[k] for split in per_split]) for k in keys}


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
        rerank: ``True`` or a :class:`ReRanking` re-ranks each trial (k-reciprocal).

    Returns:
        ``{"visible-to-thermal/all-search/single-shot": ProtocolResult, ...}``.

    Example::

        data = read_manifest("npu.csv")
        feats = extract_features(model, data.query, size=(224, 224))
        res = evaluate_cross_modality(feats, feats, data.query, data.query,
                                      camera_scene=data.meta["camera_scene"])
        print(format_table(res))
    """
    _check_trials(trials)
    _check_pairs(query_feats, query_samples, "query")
    _check_pairs(gallery_feats, gallery_samples, "gallery")
    for shot in shots:
        _num_shots(shot)
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
        qf, qs, gf, gs = _split_direction(direction, query_feats, gallery_feats, query_samples, gallery_samples)
        if any(search != "all" for search in searches):
            unknown = sorted({s.camera for s in gs} - set(scenes))
            if unknown:
                raise UserError(f"{direction}: gallery cameras {unknown} have no scene in camera_scene")
        dist = distance_matrix(qf, gf, distance)
        reranking = _rerank_inputs(rerank, qf, gf, distance)
        for search in searches:
            cameras = None if search == "all" else [c for c, sc in scenes.items() if sc == search]
            for shot in shots:
                key = f"{direction}/{search}-search/{_shot_name(shot)}"
                out[key] = _run_trials(
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


# --------------------------------------------------------------------------- features


ForwardFn = Callable[[torch.Tensor, int], Any]


def extract_features(
    model: torch.nn.Module,
    samples: Sequence[Sample],
    *,
    loader: Callable[[Sample], torch.Tensor] | None = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    size: tuple[int, int] | None = None,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    flip: bool = False,
    modal: int | None = None,
    forward: ForwardFn | None = None,
    num_workers: int = 0,
) -> torch.Tensor:
    """Features of ``samples`` from ``model`` in eval mode, in the order of ``samples``.

    The model follows AGW's test-time contract ``model(x1, x2, modal)``: ``modal=1`` reads
    the visible input ``x1``, ``modal=2`` the thermal input ``x2``; the batch is passed as
    both. ``modal=None`` picks it per sample (1 for visible, 2 for thermal; batches hold one
    modality). A model returning a tuple/list (AGW: ``(pooled, bn_feature)``) gives its
    **last** element; pass ``forward(x, modal) -> (B, D)`` to call it differently.

    Args:
        model: the network; put in eval mode for the call and restored afterwards.
        samples: the records.
        loader, transform, size: as :class:`mag_mmt.data.images.ImageDataset` (``loader``
            defaults to reading ``sample.path``; ``size`` resizes to ``(H, W)``;
            ``transform`` runs on the float ``[0, 1]`` image, e.g. normalisation).
        batch_size: images per forward pass.
        device: where the model runs (default: the device of its first parameter).
        flip: average the features of each image and its horizontal flip.
        modal: force ``1`` or ``2`` for every sample.
        forward: custom ``forward(x, modal)``.
        num_workers: ``DataLoader`` workers.

    Returns:
        ``(N, D)`` float32 tensor on ``device``.

    Example:
        >>> import torch
        >>> from mag_mmt.data.records import Sample
        >>> class Net(torch.nn.Module):
        ...     def forward(self, x1, x2, modal):
        ...         x = x1 if modal == 1 else x2
        ...         return x.mean(dim=(2, 3))
        >>> s = [Sample("a", 0, 1, 0), Sample("b", 0, 3, 1)]
        >>> f = extract_features(Net(), s, loader=lambda s: torch.zeros(3, 4, 2, dtype=torch.uint8))
        >>> tuple(f.shape)
        (2, 3)
    """
    from torch.utils.data import DataLoader, Subset

    from mag_mmt.data.images import ImageDataset

    if not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"batch_size must be a positive int, got {batch_size!r}")
    if modal not in (None, 1, 2):
        raise UserError(f"modal must be None, 1 (visible) or 2 (thermal), got {modal!r}")
    if len(samples) == 0:
        raise UserError("extract_features needs at least one sample")
    if device is None:
        param = next(iter(model.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
    device = torch.device(device)
    if forward is None:

        def forward(x: torch.Tensor, m: int) -> Any:
            return model(x, x, m)

    def run(x: torch.Tensor, m: int) -> torch.Tensor:
        out = forward(x, m)
        if isinstance(out, (tuple, list)):
            out = out[-1]
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != x.shape[0]:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise UserError(f"the model must return (B, D) features for a batch of {x.shape[0]}, got {shape}")
        return out.float()

    dataset = ImageDataset(samples, loader=loader, transform=transform, size=size)
    groups: dict[int, list[int]] = {}
    for i, s in enumerate(samples):
        m = modal if modal is not None else (1 if s.modality == VISIBLE else 2)
        groups.setdefault(m, []).append(i)

    was_training = model.training
    model.eval()
    feats: torch.Tensor | None = None
    try:
        with torch.no_grad():
            for m, indices in sorted(groups.items()):
                batches = DataLoader(Subset(dataset, indices), batch_size=batch_size, shuffle=False, num_workers=num_workers)
                done = 0
                for images, *_ in batches:
                    x = images.to(device, non_blocking=True)
                    f = run(x, m)
                    if flip:
                        f = (f + run(x.flip(-1), m)) / 2
                    if feats is None:
                        feats = torch.empty(len(samples), f.shape[1], dtype=torch.float32, device=device)
                    rows = torch.tensor(indices[done : done + x.shape[0]], device=device)
                    feats.index_copy_(0, rows, f.to(device))
                    done += x.shape[0]
    finally:
        model.train(was_training)
    assert feats is not None
    return feats
