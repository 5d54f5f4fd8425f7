"""Benchmark: ``rank_metrics`` (vectorised, chunked torch) vs the per-query numpy loop.

A SYSU-MM01-sized problem: 3803 thermal queries (96 identities, cameras 3 and 6) against a
single-shot gallery of 384 images (96 identities x 4 visible cameras) and a multi-shot
gallery of 3840 (10 per identity per camera), ``protocol="sysu"``. The baseline is the
AGW-style numpy loop in ``tests/reference_metrics.py`` (the same loop the property tests
check against), measured in the same run. The numbers must agree: CMC and the count of
valid queries exactly, mAP / mINP to 1e-12 (summation order).

Run from the repository root::

    python benchmarks/bench_eval.py            # full
    python benchmarks/bench_eval.py --quick    # multi-shot with a quarter of the queries
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from reference_metrics import reference_rank_metrics, sysu_remove  # noqa: E402

from mag_mmt.evaluation import rank_metrics  # noqa: E402


def make_problem(num_query: int, shots: int, seed: int = 0, dim: int = 64):
    """Synthetic features with an identity signal, so the metrics are neither 0 nor 1."""
    rng = np.random.default_rng(seed)
    ids = np.arange(96)
    centers = rng.normal(size=(96, dim))
    q_ids = rng.choice(ids, size=num_query)
    q_cams = rng.choice([3, 6], size=num_query)
    g_ids = np.repeat(ids, 4 * shots)
    g_cams = np.tile(np.repeat([1, 2, 4, 5], shots), 96)
    q = centers[q_ids] + 1.5 * rng.normal(size=(num_query, dim))
    g = centers[g_ids] + 1.5 * rng.normal(size=(len(g_ids), dim))
    qt = torch.from_numpy(q).float()
    gt = torch.from_numpy(g).float()
    dist = torch.cdist(qt, gt).numpy()
    return dist, q_ids, g_ids, q_cams, g_cams


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def run(name: str, num_query: int, shots: int, repeats: int, device: str) -> float:
    """Time both on one problem, check they agree, print a line; returns the speed-up."""
    dist, q_ids, g_ids, q_cams, g_cams = make_problem(num_query, shots)
    t_ref, ref = best_of(
        lambda: reference_rank_metrics(dist, q_ids, g_ids, q_cams, g_cams, remove=sysu_remove, unique_cmc=True),
        1,  # seconds to minutes per run: one is enough for a ratio
    )
    dist_t = torch.from_numpy(dist).to(device)
    args = (torch.from_numpy(q_ids), torch.from_numpy(g_ids), torch.from_numpy(q_cams), torch.from_numpy(g_cams))
    args = tuple(a.to(device) for a in args)
    rank_metrics(dist_t, *args, protocol="sysu")  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t_fast, fast = best_of(lambda: rank_metrics(dist_t, *args, protocol="sysu"), repeats)

    assert np.array_equal(fast.cmc, ref["cmc"]), "CMC differs from the reference loop"
    assert fast.num_valid_queries == ref["num_valid"]
    assert abs(fast.mAP - ref["mAP"]) <= 1e-12, (fast.mAP, ref["mAP"])
    assert abs(fast.mINP - ref["mINP"]) <= 1e-12, (fast.mINP, ref["mINP"])
    valid = fast.valid
    ap_diff = float(np.max(np.abs(fast.ap[valid] - ref["ap"][valid])))
    print(
        f"{name:<28} Q={num_query:5d} G={dist.shape[1]:5d} | reference loop {t_ref * 1e3:9.1f} ms | "
        f"rank_metrics ({device}) {t_fast * 1e3:8.1f} ms | speed-up {t_ref / t_fast:6.1f}x | "
        f"rank-1 {fast.cmc[0]:.4f} mAP {fast.mAP:.6f} mINP {fast.mINP:.6f} | max |dAP| {ap_diff:.1e}"
    )
    return t_ref / t_fast


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="multi-shot with 950 of the 3803 queries")
    parser.add_argument("--device", default="cpu", help="device for rank_metrics (cpu or cuda)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 3  # best of 3 for the fast path
    print(f"torch {torch.__version__}, numpy {np.__version__}, {args.threads} CPU threads, device {args.device}")
    ratios = [
        run("SYSU single-shot (sysu)", 3803, 1, repeats, args.device),
        run("SYSU multi-shot (sysu)", 950 if args.quick else 3803, 10, repeats, args.device),
    ]
    print(f"all numbers identical to the reference; min speed-up {min(ratios):.1f}x (goal >= 30x)")


if __name__ == "__main__":
    main()
