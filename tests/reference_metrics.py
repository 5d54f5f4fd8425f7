"""Slow, obviously-correct reference for ``mag_mmt.evaluation.rank_metrics``.

One plain numpy loop per query, following the structure of AGW's published ``eval_sysu`` /
``eval_regdb`` loops (mangye16/Cross-Modal-Re-ID-baseline, ``eval_metrics.py``), written
afresh. Two deliberate differences from AGW, both documented in ``mag_mmt.evaluation``:

* ``np.argsort(kind="stable")`` instead of AGW's default quicksort, so ties rank by gallery
  index;
* each query's CMC row is extended with its last value up to the common length (AGW's own
  loop produces ragged rows there and crashes).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

RemoveFn = Callable[[int, np.ndarray], np.ndarray]


def sysu_remove(q_cam: int, g_cams_ranked: np.ndarray) -> np.ndarray:
    """AGW eval_sysu: drop gallery camera 2 for queries from camera 3."""
    return (q_cam == 3) & (g_cams_ranked == 2)


def same_camera_remove(q_cam: int, g_cams_ranked: np.ndarray) -> np.ndarray:
    return g_cams_ranked == q_cam


def no_remove(q_cam: int, g_cams_ranked: np.ndarray) -> np.ndarray:
    return np.zeros(len(g_cams_ranked), dtype=bool)


def _extend(row: np.ndarray, length: int) -> np.ndarray:
    row = np.asarray(row[:length], dtype=np.float64)
    if len(row) < length:
        fill = row[-1] if len(row) else 0.0
        row = np.concatenate([row, np.full(length - len(row), fill)])
    return row


def reference_rank_metrics(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray | None = None,
    g_camids: np.ndarray | None = None,
    remove: RemoveFn = sysu_remove,
    unique_cmc: bool = True,
    max_rank: int = 20,
) -> dict:
    """Returns ``{"cmc", "mAP", "mINP", "num_valid", "ap", "inp"}`` (ap/inp NaN when skipped)."""
    distmat = np.asarray(distmat)
    q_pids = np.asarray(q_pids)
    g_pids = np.asarray(g_pids)
    num_q, num_g = distmat.shape
    if q_camids is None:
        q_camids = np.ones(num_q, dtype=np.int64)
    if g_camids is None:
        g_camids = 2 * np.ones(num_g, dtype=np.int64)
    if num_g < max_rank:
        max_rank = num_g
    indices = np.argsort(distmat, axis=1, kind="stable")
    pred_label = g_pids[indices]
    matches = (pred_label == q_pids[:, np.newaxis]).astype(np.int32)

    all_cmc = []
    all_ap = np.full(num_q, np.nan)
    all_inp = np.full(num_q, np.nan)
    num_valid = 0
    for q_idx in range(num_q):
        q_pid = q_pids[q_idx]
        order = indices[q_idx]
        keep = ~remove(q_camids[q_idx], g_camids[order])

        raw = matches[q_idx][keep]
        if not np.any(raw):
            continue  # query identity not in the remaining gallery: skipped
        num_valid += 1

        if unique_cmc:
            remaining = pred_label[q_idx][keep]
            _, first_index = np.unique(remaining, return_index=True)
            distinct = remaining[np.sort(first_index)]  # identities in order of first appearance
            cmc = (distinct == q_pid).astype(np.int32).cumsum()
        else:
            cmc = raw.cumsum()
            cmc[cmc > 1] = 1
        all_cmc.append(_extend(cmc, max_rank))

        cum = raw.cumsum()
        last = np.max(np.where(raw == 1)[0])
        all_inp[q_idx] = cum[last] / (last + 1.0)
        precision = np.array([x / (i + 1.0) for i, x in enumerate(cum)]) * raw
        all_ap[q_idx] = precision.sum() / raw.sum()

    if num_valid == 0:
        raise ValueError("no valid query")
    cmc = np.asarray(all_cmc).sum(0) / float(num_valid)
    valid = ~np.isnan(all_ap)
    return {
        "cmc": cmc,
        "mAP": float(np.mean(all_ap[valid])),
        "mINP": float(np.mean(all_inp[valid])),
        "num_valid": num_valid,
        "ap": all_ap,
        "inp": all_inp,
    }
