"""Benchmark: the batched ReID augmentations (mag_mmt.transforms) vs the repos' per-image transforms.

Input: B aligned pairs of uint8 3 x 288 x 144 images (the repos pre-resize SYSU-MM01 to that
size and store uint8 arrays). Outputs are normalised float32 288 x 144 crops. In one run:

* ``agw``   : two views (visible, thermal) of AGW's ``train.py`` transform: Pad(10),
              RandomCrop(288, 144), RandomHorizontalFlip, ToTensor, Normalize.
* ``caj``   : CAJ's three views (``data_loader.py``): visible + ChannelRandomErasing(0.5);
              visible + erasing + ChannelExchange(gray=2); thermal + erasing + ChannelAdapGray(0.5).
* ``caj+mag``: the batched CAJ views with MAG (p = 0.5) between visible and thermal (no
              per-image counterpart: the repos have no MAG).

Per-image baseline = what a DataLoader worker runs: torchvision's PIL transforms image by image
(``ToPILImage`` ... ``Normalize``) and CAJ's per-image channel ops (tests/reference_transforms.py,
written from CAJ's ChannelAug.py), then ``torch.stack``. Batched = ``ReIDTransform`` /
``CrossModalAugment`` on the whole batch. Throughput is output images per second in this single
process (the per-image pipeline scales with DataLoader workers; the batched one runs next to the
model on its device). Minimum over interleaved rounds (every variant once per round) after a
warm-up.

Run from the repository root::

    python benchmarks/bench_transforms.py              # CPU
    python benchmarks/bench_transforms.py --device cuda
    python benchmarks/bench_transforms.py --quick
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from typing import Callable, Dict, List

import torch
import torchvision.transforms as T

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mag_mmt.augment import ModalityAugment  # noqa: E402
from mag_mmt.transforms import CAJ_ERASE_VALUE, CrossModalAugment, ReIDTransform  # noqa: E402
from tests.reference_transforms import (  # noqa: E402
    caj_adapgray_code,
    caj_channel,
    caj_erase,
    caj_erasing_params,
    caj_exchange_code,
)

SIZE = (288, 144)
NORMALIZE = T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
rng = random.Random(0)


def erase(img: torch.Tensor) -> torch.Tensor:
    applied, top, left, h, w = caj_erasing_params(rng, img.shape[1], img.shape[2], p=0.5)
    return caj_erase(img, top, left, h, w, CAJ_ERASE_VALUE) if applied else img


def per_image(extra: Callable[[torch.Tensor], torch.Tensor] | None = None) -> T.Compose:
    ops = [T.ToPILImage(), T.Pad(10), T.RandomCrop(SIZE), T.RandomHorizontalFlip(), T.ToTensor(), NORMALIZE]
    return T.Compose(ops + ([extra] if extra else []))


AGW_T = per_image()
CAJ_V = per_image(erase)
CAJ_V1 = per_image(lambda x: caj_channel(erase(x), caj_exchange_code(rng, 2)))
CAJ_T = per_image(lambda x: caj_channel(erase(x), caj_adapgray_code(rng, 0.5)))


def loop(v_np, t_np, views) -> List[torch.Tensor]:
    """``views``: (transform, source) pairs; one stacked batch per view."""
    return [torch.stack([tf(img) for img in (v_np if src == "v" else t_np)]) for tf, src in views]


def timed(fns: Dict[str, Callable[[], object]], repeats: int, device: str) -> Dict[str, float]:
    for fn in fns.values():
        fn()
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            times[k].append(time.perf_counter() - t0)
    return {k: min(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=64, help="pairs per batch")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    repeats = 2 if args.quick else 5
    b, dev = args.batch, args.device
    g = torch.Generator().manual_seed(0)
    v = torch.randint(0, 256, (b, 3, *SIZE), dtype=torch.uint8, generator=g)
    t = torch.randint(0, 256, (b, 3, *SIZE), dtype=torch.uint8, generator=g)
    v_np, t_np = v.permute(0, 2, 3, 1).numpy(), t.permute(0, 2, 3, 1).numpy()  # HWC arrays, as the repos store
    vd, td = v.to(dev), t.to(dev)

    agw = CrossModalAugment(ReIDTransform.agw(), ReIDTransform.agw(), generator=0)
    caj = CrossModalAugment([ReIDTransform.caj_visible(), ReIDTransform.caj_visible_exchange()],
                            ReIDTransform.caj_thermal(), generator=0)
    caj_mag = CrossModalAugment([ReIDTransform.caj_visible(), ReIDTransform.caj_visible_exchange()],
                                ReIDTransform.caj_thermal(), ModalityAugment(p=0.5), generator=0)
    fns = {
        "agw loop": lambda: loop(v_np, t_np, [(AGW_T, "v"), (AGW_T, "t")]),
        "agw batched": lambda: agw(vd, td),
        "caj loop": lambda: loop(v_np, t_np, [(CAJ_V, "v"), (CAJ_V1, "v"), (CAJ_T, "t")]),
        "caj batched": lambda: caj(vd, td),
        "caj+mag batched": lambda: caj_mag(vd, td),
    }
    res = timed(fns, repeats, dev)  # interleaved: load from other processes hits all variants alike
    views = {"agw": 2, "caj": 3, "caj+mag": 3}
    print(f"B = {b} pairs of uint8 3x{SIZE[0]}x{SIZE[1]}; batched on {dev}; torch threads {torch.get_num_threads()}")
    print(f"{'variant':<18}{'seconds':>10}{'images/s':>12}{'x loop':>9}")
    for k, s in res.items():
        name = k.split()[0]
        n = views[name] * b
        ratio = "" if "loop" in k else f"{res[name.split('+')[0] + ' loop'] / s:9.1f}"
        print(f"{k:<18}{s:10.4f}{n / s:12.0f}{ratio}")


if __name__ == "__main__":
    main()
