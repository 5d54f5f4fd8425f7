"""Benchmark of the MMT loss: forward + backward time against baselines measured in the same run,
and peak memory of the chunked against the unchunked mining path.

Rows (median wall time of forward + backward, seconds; the variants of one size are run
*interleaved*, one call of each per round, so that load from other processes hits them alike):

* ``floor``         the distance matrix alone: ``pairwise_distance(x).sum().backward()``
* ``mmt``           ``MultiMaskingTripletLoss(validate=False)``: the hot path (defaults otherwise,
                    no host sync); ``mmt_checked`` is the default ``validate=True`` (one
                    ``aminmax`` pass over the embeddings and one host read-back of the flags)
* ``batch_hard``    ``BatchHardTripletLoss(validate=False)`` (the same core, "any"/"any", pos_weight 0)
* ``plain_bh``      a conventional batch-hard written here: autograd through the full matrix,
                    masked ``amax``/``amin``
* ``naive``         the naive per-anchor loop: a Python loop over anchors, each
                    computing that anchor's distances to the batch (one vectorised row) and the
                    masked max/min of MMT, float32, autograd (small N only, one call)
* ``naive_pair``    (``--naive-pair``) the per-anchor, *per-pair* float64 scalar loop of
                    ``tests/reference_losses.py`` (the test oracle; very slow, one call)

Memory: each variant runs in a fresh subprocess; on CPU the figure is the growth of the
process's peak resident set size during one forward + backward, after the inputs exist: the
peak (``VmHWM``) is reset through ``/proc/self/clear_refs`` just before the call and read after
it (``getrusage`` ``ru_maxrss`` growth where that is unavailable). The child runs with ``MALLOC_MMAP_THRESHOLD_=65536`` so that
glibc serves every tensor-sized block by ``mmap`` and returns it on free; without it the figure
swings by hundreds of MiB between identical runs (heap reuse/fragmentation). It includes the
gradient buffers (``O(N * D)``), i.e. it is what a training step would add. On CUDA it is
``torch.cuda.max_memory_allocated`` growth.

Usage::

    python benchmarks/bench_loss.py --quick      # < 2 minutes on 2 cores
    python benchmarks/bench_loss.py              # N = 64..4096 and the N = 16384 memory run
    BENCH_THREADS=1 python benchmarks/bench_loss.py --quick   # torch threads (default 2)
    python benchmarks/bench_loss.py --sizes 256 --memory-n 0 --naive-pair   # + the per-pair oracle loop

On a machine shared with other busy processes, 2 torch threads spin-wait against each other
and small-N rows get noisy; compare rows of one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from mag_mmt.functional.distances import pairwise_distance  # noqa: E402
from mag_mmt.losses import BatchHardTripletLoss, MultiMaskingTripletLoss  # noqa: E402


def make_batch(n: int, d: int, device: str, k: int = 4, seed: int = 0):
    """P x (K visible + K thermal), the paper's sampler layout."""
    g = torch.Generator().manual_seed(seed)
    p = max(1, n // (2 * k))
    labels = torch.arange(p).repeat_interleave(2 * k)[:n]
    mods = torch.tensor([0] * k + [1] * k).repeat(p)[:n]
    x = torch.randn(n, d, generator=g)
    return x.to(device), labels.to(device), mods.to(device)


def plain_batch_hard(x, labels, margin=0.3):
    dist = pairwise_distance(x)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=x.device)
    hp = torch.where(same & ~eye, dist, float("-inf")).amax(1)
    hn = torch.where(~same, dist, float("inf")).amin(1)
    return torch.relu(hp - hn + margin).mean()


def naive_per_anchor_mmt(x, labels, mods, margin=0.3, pos_margin=0.1, pos_weight=1.0):
    """The naive baseline: a Python loop over anchors; per anchor its distances to the
    whole batch, cross-modality positive/negative masks, masked max/min (float32, autograd)."""
    terms, valid = [], 0
    for i in range(x.shape[0]):
        d = ((x - x[i]) ** 2).sum(dim=1).clamp_min(1e-12).sqrt()
        cross = mods != mods[i]
        pos = cross & (labels == labels[i])
        neg = cross & (labels != labels[i])
        if not bool(pos.any()) or not bool(neg.any()):
            continue
        dp, dn = d[pos], d[neg]
        hp = dp.max()
        terms.append(torch.relu(hp - dn.min() + margin) + pos_weight * torch.relu(hp - dp.min() - pos_margin))
        valid += 1
    return torch.stack(terms).sum() / max(valid, 1)


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def time_interleaved(fns: dict, x, repeats: int, device: str) -> dict:
    """Median forward+backward time of each function, run round-robin (one warm-up round)."""
    times: dict = {k: [] for k in fns}
    for i in range(repeats + 1):
        for name, fn in fns.items():
            x.grad = None
            _sync(device)
            t = time.perf_counter()
            fn(x).backward()
            _sync(device)
            if i:
                times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def once(fn, x) -> float:
    x = x.detach().clone().requires_grad_(True)
    t = time.perf_counter()
    fn(x).backward()
    return time.perf_counter() - t


def naive_pair_time(x, labels, mods) -> float:
    from tests.reference_losses import reference_mmt

    y, m = labels.tolist(), mods.tolist()
    return once(lambda e: reference_mmt(e, y, m)[0], x.detach().cpu().double())


def speed(sizes, dim, repeats, naive_max, device, naive_pair=False):
    mmt = MultiMaskingTripletLoss(validate=False)
    mmt_checked = MultiMaskingTripletLoss()
    bh = BatchHardTripletLoss(validate=False)
    print(f"\nforward+backward, D={dim}, median of {repeats} interleaved rounds (seconds; ratios vs floor, "
          f"and naive/mmt); mmt = validate=False hot path, mmt_chk = validate=True")
    head = f"{'N':>6} {'floor':>8} {'mmt':>8} {'mmt_chk':>8} {'batch_hard':>10} {'plain_bh':>8} {'naive':>8}" \
           + (f" {'naive_pair':>10}" if naive_pair else "") + \
           f" | {'mmt/floor':>9} {'chk/floor':>9} {'bh/floor':>8} {'plain/floor':>11} {'naive/mmt':>9}" \
           + (f" {'pair/mmt':>8}" if naive_pair else "")
    print(head)
    rows = []
    for n in sizes:
        x, y, m = make_batch(n, dim, device)
        x.requires_grad_(True)
        r = max(1, repeats if n <= 1024 else repeats // 2)
        t = time_interleaved({
            "floor": lambda e: pairwise_distance(e).sum(),
            "mmt": lambda e: mmt(e, y, m),
            "mmt_checked": lambda e: mmt_checked(e, y, m),
            "batch_hard": lambda e: bh(e, y, m),
            "plain_bh": lambda e: plain_batch_hard(e, y),
        }, x, r, device)
        small = n <= naive_max
        t["naive"] = once(lambda e: naive_per_anchor_mmt(e, y, m), x) if small else float("nan")
        t["naive_pair"] = naive_pair_time(x, y, m) if (small and naive_pair) else float("nan")
        rows.append(dict(n=n, **t))
        f = t["floor"]
        print(f"{n:>6} {f:>8.4f} {t['mmt']:>8.4f} {t['mmt_checked']:>8.4f} {t['batch_hard']:>10.4f} "
              f"{t['plain_bh']:>8.4f} {t['naive']:>8.3f}" + (f" {t['naive_pair']:>10.3f}" if naive_pair else "")
              + f" | {t['mmt'] / f:>9.2f} {t['mmt_checked'] / f:>9.2f} {t['batch_hard'] / f:>8.2f} "
              f"{t['plain_bh'] / f:>11.2f} {t['naive'] / t['mmt']:>9.0f}"
              + (f" {t['naive_pair'] / t['mmt']:>8.0f}" if naive_pair else ""), flush=True)
    return rows


# ----------------------------------------------------------------------------- memory

def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Linux: writing 5 to clear_refs resets VmHWM (the peak RSS) to the current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _proc_status_kib("VmHWM") is not None
    except OSError:
        return False


def _memory_child(n: int, dim: int, chunk: str, device: str) -> None:
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", 2)))
    x, y, m = make_batch(n, dim, device)
    x.requires_grad_(True)
    chunk_size = n if chunk == "unchunked" else None
    loss = MultiMaskingTripletLoss(chunk_size=chunk_size, validate=False)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.max_memory_allocated()
    else:
        hwm = _reset_peak_rss()
        before = (_proc_status_kib("VmRSS") if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    t = time.perf_counter()
    loss(x, y, m).backward()
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = (_proc_status_kib("VmHWM") if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    print(json.dumps(dict(peak_growth=peak - before, seconds=time.perf_counter() - t)))


def memory(n: int, dim: int, device: str):
    print(f"\nN={n}, D={dim}: peak memory growth during one forward+backward "
          f"({'cuda max_memory_allocated' if device == 'cuda' else 'CPU peak RSS'}, fresh subprocess each)")
    out = {}
    for chunk in ("unchunked", "auto-chunked"):
        res = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--_memory-child", str(n), str(dim), chunk, device],
            capture_output=True, text=True, check=True,
            env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"},
        )
        out[chunk] = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"  {chunk:>13}: {out[chunk]['peak_growth'] / 2**20:8.0f} MiB   {out[chunk]['seconds']:.1f} s")
    print(f"  chunked / unchunked peak: {out['auto-chunked']['peak_growth'] / out['unchunked']['peak_growth']:.2f}"
          f"   (inputs alone: {n * dim * 4 / 2**20:.0f} MiB; one N x N float32 matrix: {n * n * 4 / 2**20:.0f} MiB)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes and few repeats (< 2 minutes on 2 cores)")
    ap.add_argument("--sizes", type=int, nargs="*", default=None)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--memory-n", type=int, default=None, help="N of the memory run (0 skips it)")
    ap.add_argument("--naive-pair", action="store_true",
                    help="also time the per-pair float64 oracle loop of tests/reference_losses.py (slow)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--_memory-child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._memory_child:
        n, dim, chunk, device = args._memory_child
        _memory_child(int(n), int(dim), chunk, device)
        return
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", 2)))
    sizes = args.sizes or ([64, 256, 1024] if args.quick else [64, 256, 1024, 4096])
    repeats = args.repeats or (3 if args.quick else 7)
    memory_n = args.memory_n if args.memory_n is not None else (8192 if args.quick else 16384)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"device={args.device}, threads={torch.get_num_threads()}, cpus={os.cpu_count()}")
    if args.device == "cuda":
        print("gpu:", torch.cuda.get_device_name())
    speed(sizes, args.dim, repeats, naive_max=256, device=args.device, naive_pair=args.naive_pair)
    if memory_n:
        memory(memory_n, args.dim, args.device)


if __name__ == "__main__":
    main()
