"""Benchmark of the MMT loss: forward + backward time against baselines measured in the same run,
and peak memory of the chunked against the unchunked mining path.

Rows (median wall time of forward + backward, seconds):

* ``floor``         the distance matrix alone: ``pairwise_distance(x).sum().backward()``
* ``mmt``           ``MultiMaskingTripletLoss()`` (defaults, value checks on)
* ``batch_hard``    ``BatchHardTripletLoss()`` (the same core, "any"/"any", pos_weight 0)
* ``plain_bh``      a conventional batch-hard written here: autograd through the full matrix,
                    masked ``amax``/``amin``
* ``naive``         the per-anchor, per-pair Python loop of ``tests/reference_losses.py``
                    (small N only)

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

from mag_mmt.distances import pairwise_distance  # noqa: E402
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


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def time_fn(fn, x, repeats: int, device: str) -> float:
    times = []
    for i in range(repeats + 1):
        x.grad = None
        _sync(device)
        t = time.perf_counter()
        fn(x).backward()
        _sync(device)
        if i:  # first call is warm-up
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def naive_time(x, labels, mods) -> float:
    from tests.reference_losses import reference_mmt

    x = x.detach().cpu().double().requires_grad_(True)
    t = time.perf_counter()
    reference_mmt(x, labels.tolist(), mods.tolist())[0].backward()
    return time.perf_counter() - t


def speed(sizes, dim, repeats, naive_max, device):
    mmt = MultiMaskingTripletLoss()
    bh = BatchHardTripletLoss()
    print(f"\nforward+backward, D={dim}, median of {repeats} (seconds; ratios vs floor, and naive/mmt)")
    head = f"{'N':>6} {'floor':>9} {'mmt':>9} {'batch_hard':>10} {'plain_bh':>9} {'naive':>9} | " \
           f"{'mmt/floor':>9} {'bh/floor':>8} {'plain/floor':>11} {'naive/mmt':>9}"
    print(head)
    rows = []
    for n in sizes:
        x, y, m = make_batch(n, dim, device)
        x.requires_grad_(True)
        r = max(1, repeats if n <= 1024 else repeats // 2)
        t_floor = time_fn(lambda e: pairwise_distance(e).sum(), x, r, device)
        t_mmt = time_fn(lambda e: mmt(e, y, m), x, r, device)
        t_bh = time_fn(lambda e: bh(e, y, m), x, r, device)
        t_plain = time_fn(lambda e: plain_batch_hard(e, y), x, r, device)
        t_naive = naive_time(x, y, m) if n <= naive_max else float("nan")
        row = dict(n=n, floor=t_floor, mmt=t_mmt, batch_hard=t_bh, plain_bh=t_plain, naive=t_naive)
        rows.append(row)
        print(f"{n:>6} {t_floor:>9.4f} {t_mmt:>9.4f} {t_bh:>10.4f} {t_plain:>9.4f} {t_naive:>9.3f} | "
              f"{t_mmt / t_floor:>9.2f} {t_bh / t_floor:>8.2f} {t_plain / t_floor:>11.2f} {t_naive / t_mmt:>9.0f}")
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
    speed(sizes, args.dim, repeats, naive_max=256, device=args.device)
    if memory_n:
        memory(memory_n, args.dim, args.device)


if __name__ == "__main__":
    main()
