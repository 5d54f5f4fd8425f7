"""Ranking metrics for cross-modality re-identification: CMC, mAP and mINP.

:func:`rank_metrics` is a vectorised, chunked implementation of the evaluation loops that
every visible-infrared paper reports numbers with (AGW, ``mangye16/Cross-Modal-Re-ID-baseline``,
``eval_metrics.py``):

* ``protocol="sysu"`` gives AGW ``eval_sysu``'s numbers: gallery images from camera 2 are
  removed for queries from camera 3; the CMC counts every gallery *identity* once, at the
  position where it first appears in the remaining ranking (AGW's "new_cmc"); AP and INP use
  every remaining gallery image.
* ``protocol="regdb"`` gives AGW ``eval_regdb``'s numbers (no gallery image is removed,
  standard CMC; cameras are ignored).
* ``protocol="same-camera"`` removes, for each query, the gallery images taken by the
  query's own camera (NPU-ReID); a mapping ``{query camera: gallery cameras to remove}`` or a
  callable gives any other camera-conflict rule. These use the standard CMC (rank of the
  first remaining true match).

Conventions, shared by every protocol:

* ``distmat`` is smaller-is-closer. Ranks are those of a **stable** sort of each row:
  equal distances keep gallery-index order (the order of ``numpy.argsort(kind="stable")``).
  AGW calls ``np.argsort`` with the default, non-stable quicksort, so where a row holds
  *tied* distances AGW's numbers depend on numpy's sort internals and may differ from ours;
  without ties the two agree.
* A query with no true match left in the gallery (after removal) is skipped: it counts in
  neither the CMC nor mAP/mINP, exactly like AGW. If no query is left a ``ValueError`` is
  raised (AGW asserts).
* The CMC has ``min(max_rank, num_gallery)`` entries (AGW shortens it the same way). Where
  AGW's own loop would produce rows of unequal length (fewer distinct identities, or fewer
  remaining gallery images, than ``max_rank``) -- which makes AGW crash -- we extend each
  query's curve with its last value, the only consistent continuation.
* CMC values are fractions in ``[0, 1]`` stored as float64 (AGW: float32); AP and INP are
  float64. The per-query INP equals AGW's exactly; per-query AP can differ from a numpy loop
  in the last bit because the summation order differs (tests allow ``1e-12``).

Everything runs on ``distmat``'s device (CPU or CUDA) in torch, all queries of a chunk at
once, with no Python loop over queries. Rows are never fully sorted: only each query's true
matches are sorted, and every other gallery image is placed among them by binary search
(``O(G log n)`` per query for ``n`` true matches instead of ``O(G log G)``), with an exact
index comparison where a distance equals a match's. Per-query results come back to the host
once, at the end (plus one small read per chunk and for the tie check).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Literal, Mapping, Union

import numpy as np
import torch

from mag_mmt._validation import (
    check_floating,
    check_integer,
    check_same_length,
    check_tensor,
    check_values,
)

__all__ = ["RankResult", "rank_metrics", "PROTOCOLS", "CameraRule"]

#: a removal rule: ``fn(query_cams (n,), gallery_cams (G,)) -> (n, G)`` bool, True = remove
CameraRule = Union[
    str,
    Mapping[int, Iterable[int]],
    Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
]

#: names accepted by ``protocol``
PROTOCOLS: tuple[str, ...] = ("sysu", "regdb", "standard", "same-camera")

#: SYSU-MM01: gallery cameras removed per query camera (thermal cam 3 and visible cam 2
#: look at the same scene)
SYSU_REMOVED_CAMERAS: dict[int, tuple[int, ...]] = {3: (2,)}

#: elements per chunk (queries x gallery) when ``chunk_size`` is not given; about 40 MiB of
#: int64/float64 temporaries per array
_DEFAULT_CHUNK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class RankResult:
    """Result of :func:`rank_metrics`.

    Attributes:
        cmc: ``(L,)`` float64, ``cmc[k - 1]`` is the rank-k matching rate in ``[0, 1]``,
            ``L = min(max_rank, num_gallery)``.
        mAP: mean average precision over the valid queries, in ``[0, 1]``.
        mINP: mean inverse negative penalty (AGW) over the valid queries, in ``[0, 1]``.
        num_valid_queries: queries with at least one true match left in the gallery.
        ap: ``(Q,)`` float64 average precision per query, NaN for skipped queries.
        inp: ``(Q,)`` float64 INP per query, NaN for skipped queries.
        match_rank: ``(Q,)`` int64, the 1-based rank the CMC counts for each query (the
            distinct-identity rank for ``"sysu"``), ``-1`` for skipped queries.
    """

    cmc: np.ndarray
    mAP: float
    mINP: float
    num_valid_queries: int
    ap: np.ndarray
    inp: np.ndarray
    match_rank: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        """``(Q,)`` bool, the queries that count."""
        return self.match_rank > 0

    @property
    def rank1(self) -> float:
        return float(self.cmc[0])

    def rank(self, k: int) -> float:
        """Rank-``k`` matching rate (1-based ``k``)."""
        if not 1 <= k <= len(self.cmc):
            raise ValueError(f"k must be in 1..{len(self.cmc)}, got {k}")
        return float(self.cmc[k - 1])

    def as_dict(self, ranks: Iterable[int] = (1, 5, 10, 20)) -> dict[str, float]:
        """``{"rank-1": ..., "mAP": ..., "mINP": ...}`` (fractions); ranks beyond the CMC are left out."""
        out = {f"rank-{k}": float(self.cmc[k - 1]) for k in ranks if 1 <= k <= len(self.cmc)}
        out["mAP"] = self.mAP
        out["mINP"] = self.mINP
        return out

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={v:.4f}" for k, v in self.as_dict().items())
        return f"RankResult({parts}, num_valid_queries={self.num_valid_queries})"


def _as_tensor(x: Any, name: str, device: torch.device | None = None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x
    else:
        try:
            t = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a tensor or array-like, got {type(x).__name__}") from err
    return t if device is None else t.to(device)


def _protocol_parts(
    protocol: CameraRule,
) -> tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None, bool, bool]:
    """``(removal rule or None, unique-identity CMC by default, cameras needed)``."""
    if isinstance(protocol, str):
        if protocol == "sysu":
            return _mapping_rule(SYSU_REMOVED_CAMERAS), True, True
        if protocol in ("regdb", "standard"):
            return None, False, False
        if protocol == "same-camera":
            return (lambda qc, gc: qc[:, None] == gc[None, :]), False, True
        raise ValueError(f"protocol must be one of {PROTOCOLS}, a mapping or a callable, got {protocol!r}")
    if isinstance(protocol, Mapping):
        return _mapping_rule(protocol), False, True
    if callable(protocol):
        return protocol, False, True
    raise ValueError(f"protocol must be one of {PROTOCOLS}, a mapping or a callable, got {protocol!r}")


def _mapping_rule(
    mapping: Mapping[int, Iterable[int]],
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    items = [(int(q), [int(g) for g in gs]) for q, gs in mapping.items()]

    def rule(qc: torch.Tensor, gc: torch.Tensor) -> torch.Tensor:
        out = None
        for q, gs in items:
            g_hit = torch.isin(gc, torch.tensor(gs, dtype=gc.dtype, device=gc.device))
            part = (qc == q)[:, None] & g_hit[None, :]
            out = part if out is None else out.logical_or_(part)
        if out is None:
            return torch.zeros(qc.shape[0], gc.shape[0], dtype=torch.bool, device=qc.device)
        return out

    return rule


def rank_metrics(
    distmat: Any,
    query_ids: Any,
    gallery_ids: Any,
    query_cams: Any = None,
    gallery_cams: Any = None,
    protocol: CameraRule = "sysu",
    max_rank: int = 20,
    chunk_size: int | None = None,
    cmc: Literal["standard", "unique"] | None = None,
) -> RankResult:
    """CMC, mAP and mINP of a query-by-gallery distance matrix.

    Args:
        distmat: ``(Q, G)`` floating, smaller is closer; numpy array or torch tensor, on any
            device (the computation runs there).
        query_ids: ``(Q,)`` integer identities.
        gallery_ids: ``(G,)`` integer identities.
        query_cams: ``(Q,)`` integer cameras; needed unless ``protocol`` is ``"regdb"`` or
            ``"standard"``.
        gallery_cams: ``(G,)`` integer cameras; needed like ``query_cams``.
        protocol: ``"sysu"`` (AGW ``eval_sysu``), ``"regdb"`` (AGW ``eval_regdb``),
            ``"standard"`` (no removal, standard CMC), ``"same-camera"`` (remove gallery
            images of the query's camera, NPU-ReID), a mapping
            ``{query camera: gallery cameras to remove}``, or a callable
            ``fn(query_cams (n,), gallery_cams (G,)) -> (n, G) bool`` (True = remove).
        max_rank: CMC length; shortened to the gallery size like AGW.
        chunk_size: queries per chunk (memory ~ ``chunk_size * G * 40`` bytes); default
            about 2M matrix elements per chunk.
        cmc: ``"unique"`` counts each gallery identity once (AGW ``eval_sysu``),
            ``"standard"`` ranks gallery images; default: ``"unique"`` for ``"sysu"``,
            ``"standard"`` otherwise.

    Returns:
        :class:`RankResult` with ``.cmc``, ``.mAP``, ``.mINP``, ``.num_valid_queries`` and
        per-query ``.ap``, ``.inp``, ``.match_rank``.

    Ties are broken by gallery index (stable sort); see the module docstring for how that
    relates to AGW.

    Example:
        >>> import numpy as np
        >>> from mag_mmt.evaluation import rank_metrics
        >>> dist = np.array([[0.1, 0.5, 0.3], [0.9, 0.2, 0.4]])
        >>> r = rank_metrics(dist, [1, 2], [1, 2, 2], protocol="regdb", max_rank=3)
        >>> r.cmc.tolist(), round(r.mAP, 4)
        ([1.0, 1.0, 1.0], 1.0)
    """
    dist = check_tensor(_as_tensor(distmat, "distmat"), "distmat", ndim=2)
    check_floating(dist, "distmat")
    device = dist.device
    num_q, num_g = dist.shape
    if num_q == 0 or num_g == 0:
        raise ValueError(f"distmat must have at least one query and one gallery item, got shape {tuple(dist.shape)}")
    qids = check_integer(check_tensor(_as_tensor(query_ids, "query_ids", device), "query_ids", 1), "query_ids")
    gids = check_integer(check_tensor(_as_tensor(gallery_ids, "gallery_ids", device), "gallery_ids", 1), "gallery_ids")
    if qids.shape[0] != num_q:
        raise ValueError(f"query_ids has {qids.shape[0]} entries but distmat has {num_q} rows")
    if gids.shape[0] != num_g:
        raise ValueError(f"gallery_ids has {gids.shape[0]} entries but distmat has {num_g} columns")
    if not isinstance(max_rank, int) or isinstance(max_rank, bool) or max_rank < 1:
        raise ValueError(f"max_rank must be a positive int, got {max_rank!r}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    if cmc not in (None, "standard", "unique"):
        raise ValueError(f"cmc must be 'standard', 'unique' or None, got {cmc!r}")

    rule, unique_default, needs_cams = _protocol_parts(protocol)
    unique = unique_default if cmc is None else cmc == "unique"
    qcams = gcams = None
    if needs_cams:
        if query_cams is None or gallery_cams is None:
            raise ValueError(f"protocol {protocol!r} needs query_cams and gallery_cams")
        qcams = check_integer(check_tensor(_as_tensor(query_cams, "query_cams", device), "query_cams", 1), "query_cams")
        gcams = check_integer(check_tensor(_as_tensor(gallery_cams, "gallery_cams", device), "gallery_cams", 1), "gallery_cams")
        check_same_length("query_ids", qids, "query_cams", qcams)
        check_same_length("gallery_ids", gids, "gallery_cams", gcams)
    check_values([(~torch.isnan(dist).any(), "distmat contains NaN")])

    # dense labels 0..C-1 shared by query and gallery
    _, inverse = torch.unique(torch.cat([gids.long(), qids.long()]), return_inverse=True)
    g_lab, q_lab = inverse[:num_g], inverse[num_g:]
    members = _identity_table(g_lab, int(inverse.max()) + 1)

    length = min(max_rank, num_g)
    step = chunk_size or max(1, _DEFAULT_CHUNK_ELEMENTS // num_g)
    aps, inps, ranks = [], [], []
    for start in range(0, num_q, step):
        stop = min(start + step, num_q)
        removed = None if rule is None else _rule_mask(rule, qcams[start:stop], gcams, num_g)  # type: ignore[index]
        ap, inp, rank = _chunk_metrics(dist[start:stop], q_lab[start:stop], g_lab, members, removed, unique)
        aps.append(ap)
        inps.append(inp)
        ranks.append(rank)

    ap_all = torch.cat(aps).cpu().numpy()
    inp_all = torch.cat(inps).cpu().numpy()
    rank_all = torch.cat(ranks).cpu().numpy()
    valid = rank_all > 0
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise ValueError("no query has a true match left in the gallery; nothing to evaluate")
    ks = np.arange(1, length + 1)
    counts = ((rank_all[valid, None] <= ks[None, :])).sum(axis=0)
    return RankResult(
        cmc=counts / float(num_valid),
        mAP=float(np.mean(ap_all[valid])),
        mINP=float(np.mean(inp_all[valid])),
        num_valid_queries=num_valid,
        ap=ap_all,
        inp=inp_all,
        match_rank=rank_all,
    )


def _rule_mask(
    rule: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    qcams: torch.Tensor,
    gcams: torch.Tensor,
    num_g: int,
) -> torch.Tensor:
    mask = rule(qcams, gcams)
    if not isinstance(mask, torch.Tensor) or mask.shape != (qcams.shape[0], num_g):
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(
            f"camera rule must return a ({qcams.shape[0]}, {num_g}) bool tensor (True = remove), got {shape}"
        )
    return mask.to(device=qcams.device, dtype=torch.bool)


def _identity_table(g_lab: torch.Tensor, num_labels: int) -> torch.Tensor:
    """``(C, M)`` gallery indices of each label, ascending, padded with ``G`` (M = largest count)."""
    num_g = g_lab.shape[0]
    order = torch.sort(g_lab, stable=True).indices  # grouped by label, index order inside
    counts = torch.bincount(g_lab, minlength=num_labels)
    width = max(int(counts.max()), 1)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(num_g, device=g_lab.device) - starts[g_lab[order]]
    table = torch.full((num_labels, width), num_g, dtype=torch.long, device=g_lab.device)
    table[g_lab[order], slot] = order
    return table


def _chunk_metrics(
    dist: torch.Tensor,
    q_lab: torch.Tensor,
    g_lab: torch.Tensor,
    members: torch.Tensor,
    removed: torch.Tensor | None,
    unique: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-query ``(AP, INP, CMC rank)`` of one chunk of queries; NaN / -1 where skipped.

    Ranks are those of a stable sort of each row (key ``(distance, gallery index)``), found
    without sorting the row. Only the ``n`` true matches of a query are sorted; each
    remaining gallery image ``k`` gets ``b[k]`` = how many true matches rank before it (one
    binary search, plus an exact index comparison for the rare images whose distance equals
    a match's); the ``j``-th true match then ranks at ``#{remaining k: b[k] < j}``.
    Cost ``O(G log n)`` per query instead of ``O(G log G)``.
    """
    n_q, num_g = dist.shape
    device = dist.device
    dist = dist.contiguous()
    # the query's true matches: its identity's gallery images that remain
    pos_idx = members[q_lab]  # (n, M) ascending, padded with num_g
    real = pos_idx < num_g
    safe_idx = pos_idx.clamp_max(num_g - 1)
    if removed is not None:
        real &= ~removed.gather(1, safe_idx)
    num_rel = real.sum(1)
    # sort the matches by (distance, index): real ones first in index order, then a stable
    # sort by distance (padding at +inf stays behind real +inf distances)
    front = torch.sort((~real).to(torch.uint8), dim=1, stable=True).indices
    pos_idx, real = pos_idx.gather(1, front), real.gather(1, front)
    inf = torch.tensor(float("inf"), dtype=dist.dtype, device=device)
    pos_d = torch.where(real, dist.gather(1, pos_idx.clamp_max(num_g - 1)), inf)
    pos_d, perm = torch.sort(pos_d, dim=1, stable=True)
    pos_idx = pos_idx.gather(1, perm)
    width = pos_d.shape[1]

    # b: matches with a smaller distance (binary search), then exact tie-breaking by index
    # for the images whose distance equals a match's. The matches' own b is their sorted
    # position; written directly, so only foreign ties (rare with real features) remain.
    b = torch.searchsorted(pos_d, dist, right=False)
    slots = torch.arange(width, device=device)
    real = slots[None, :] < num_rel[:, None]  # real matches come first after the sort
    nan = torch.tensor(float("nan"), dtype=dist.dtype, device=device)
    probe = torch.cat([torch.where(real, pos_d, nan), nan.expand(n_q, 1)], dim=1)
    tied = probe.gather(1, b) == dist  # NaN padding never equals
    # a row's padded slots point at its first match (or any column when it has none), and
    # write the same values as that match, so the scatters below are deterministic
    target = torch.where(real, pos_idx, pos_idx[:, :1]).clamp_max(num_g - 1)
    tied.scatter_(1, target, False)
    if removed is not None:
        tied.masked_fill_(removed, False)
    rows, cols = tied.nonzero(as_tuple=True)
    if rows.numel():
        same = (probe[rows, :width] == dist[rows, cols][:, None]) & (pos_idx[rows] < cols[:, None])
        b[rows, cols] += same.sum(1)
    b.scatter_(1, target, torch.where(real, slots[None, :], 0))
    if removed is not None:
        b.masked_fill_(removed, width + 1)  # removed images go to an overflow bucket

    # rank of the j-th match (1-based) = remaining images with b < j
    ones = torch.ones((1, 1), dtype=torch.long, device=device).expand(n_q, num_g)
    hist = torch.zeros(n_q, width + 2, dtype=torch.long, device=device).scatter_add_(1, b, ones)
    ranks = hist.cumsum(1)[:, :width]  # (n, width), meaningful where j <= num_rel
    j = slots + 1
    valid = num_rel > 0
    nan64 = torch.full((n_q,), float("nan"), dtype=torch.float64, device=device)
    prec = torch.where(real, j.double()[None, :] / ranks.clamp_min(1).double(), 0.0)
    ap = torch.where(valid, prec.sum(1) / num_rel.clamp_min(1).double(), nan64)
    last = ranks.gather(1, (num_rel - 1).clamp_min(0)[:, None]).squeeze(1)
    inp = torch.where(valid, num_rel.double() / last.clamp_min(1).double(), nan64)
    if unique:
        # distinct identities among the remaining images up to and including the first
        # match: the identities whose smallest b is 0
        per_label = torch.full((n_q, members.shape[0]), width + 1, dtype=torch.long, device=device)
        per_label.scatter_reduce_(1, g_lab.expand(n_q, num_g), b, reduce="amin")
        rank = (per_label == 0).sum(1)
    else:
        rank = ranks[:, 0]
    rank = torch.where(valid, rank, -1)
    return ap, inp, rank
