"""Benchmark: ``ModalityAugment`` (MAG) vs the floor vs a per-pair Python loop.

At B = 64 pairs of 3x288x144 and 3x224x224 float32 images (p = 0.5), in one run:

* ``ModalityAugment``   : the full call: sampling on the device, mask, two ``torch.where``.
* ``modality_exchange`` : the functional apply with given boxes (mask + two ``torch.where``).
* floor                 : exactly two ``torch.where`` with a precomputed (B, 1, H, W) mask.
* loop                  : per-pair Python loop, ``clone`` + slice copies of the same boxes
                          (boxes read to the host with one ``tolist`` inside the timing).

All four produce identical outputs (checked). Times are the minimum over interleaved rounds after
a warm-up (robust on a shared machine); ratios are printed against the floor and the loop measured in the same run.
Goals: CPU <= 1.5x floor and <= 1.25x loop; GPU >= 20x faster than the loop.

Run from the repository root::

    python benchmarks/bench_augment.py           # full
    python benchmarks/bench_augment.py --quick   # fewer repeats
    python benchmarks/bench_augment.py --device cuda
"""

from __future__ import annotations

import argparse
import time
from typing import Callable, Dict, List, Tuple

import torch

from mag_mmt.augment import ModalityAugment
from mag_mmt.functional import exchange_mask, modality_exchange


def loop_exchange(v: torch.Tensor, t: torch.Tensor, params: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """The per-pair Python loop doing the same exchange (the obvious implementation)."""
    boxes = params["boxes"].tolist()
    apply = params["batch_prob"].tolist()
    v_out, t_out = v.clone(), t.clone()
    for i, ((x1, y1, x2, y2), a) in enumerate(zip(boxes, apply)):
        if a:
            v_out[i, :, y1:y2, x1:x2] = t[i, :, y1:y2, x1:x2]
            t_out[i, :, y1:y2, x1:x2] = v[i, :, y1:y2, x1:x2]
    return v_out, t_out


def timed(fns: Dict[str, Callable[[], object]], repeats: int, device: str) -> Dict[str, float]:
    """Interleaved rounds (every variant once per round, so load from other processes hits all
    alike); the minimum over rounds estimates each variant's own cost."""
    for fn in fns.values():
        fn()  # warm-up
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return {k: min(v) for k, v in times.items()}


def run(shape: Tuple[int, int, int], batch: int, repeats: int, device: str, dtype: torch.dtype) -> Dict[str, float]:
    c, h, w = shape
    g = torch.Generator(device="cpu").manual_seed(0)
    v = torch.rand(batch, c, h, w, generator=g).to(device=device, dtype=dtype)
    t = torch.rand(batch, c, h, w, generator=g).to(device=device, dtype=dtype)
    aug = ModalityAugment(p=0.5, generator=0)
    aug(v, t)
    params = aug._params
    mask = exchange_mask(params["boxes"], h, w, params["batch_prob"])

    out_mod = aug(v, t, params=params)
    out_fn = modality_exchange(v, t, params["boxes"], params["batch_prob"])
    out_floor = (torch.where(mask, t, v), torch.where(mask, v, t))
    out_loop = loop_exchange(v, t, params)
    for out in (out_fn, out_floor, out_loop):
        assert torch.equal(out[0], out_mod[0]) and torch.equal(out[1], out_mod[1]), "outputs differ"

    res = timed(
        {
            "module": lambda: aug(v, t),
            "functional": lambda: modality_exchange(v, t, params["boxes"], params["batch_prob"]),
            "floor": lambda: (torch.where(mask, t, v), torch.where(mask, v, t)),
            "loop": lambda: loop_exchange(v, t, params),
        },
        repeats,
        device,
    )
    name = f"{device} {str(dtype).replace('torch.', '')} B={batch} {c}x{h}x{w}"
    print(
        f"{name:<34} module {res['module'] * 1e3:8.2f} ms | functional {res['functional'] * 1e3:8.2f} ms | "
        f"floor {res['floor'] * 1e3:8.2f} ms | loop {res['loop'] * 1e3:8.2f} ms | "
        f"module/floor {res['module'] / res['floor']:5.2f}x | module/loop {res['module'] / res['loop']:5.2f}x | "
        f"loop/module {res['loop'] / res['module']:6.1f}x"
    )
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--device", default=None, help="cpu, cuda, or both (default: cpu, plus cuda if present)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--uint8", action="store_true", help="also time uint8 images")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 5 if args.quick else 21
    if args.device is None:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    elif args.device == "both":
        devices = ["cpu", "cuda"]
    else:
        devices = [args.device]
    dtypes = [torch.float32] + ([torch.uint8] if args.uint8 else [])
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, rounds {repeats} (min, interleaved)")
    for device in devices:
        for dtype in dtypes:
            for shape in ((3, 288, 144), (3, 224, 224)):
                run(shape, args.batch, repeats * (3 if device == "cuda" else 1), device, dtype)


if __name__ == "__main__":
    main()
