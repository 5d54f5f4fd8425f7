"""Slow, obviously-correct per-image references for mag_mmt.transforms, written from the repos'
per-image transforms: torchvision's Pad / RandomCrop / RandomHorizontalFlip (their own
``get_params`` and functional ops) and CAJ's ChannelRandomErasing, ChannelExchange and
ChannelAdapGray (Python ``random``, one image at a time, slice assignment)."""

from __future__ import annotations

import math
import random
from typing import Sequence, Tuple

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF

GRAY = (0.2989, 0.5870, 0.1140)


# ---------------------------------------------------------------- pad, crop, flip (torchvision)
def tv_crop_flip_params(img: torch.Tensor, size: Tuple[int, int], padding: int, flip_p: float = 0.5
                        ) -> Tuple[int, int, bool]:
    """torchvision's own draws (global torch RNG): RandomCrop.get_params on the padded image,
    then RandomHorizontalFlip's ``torch.rand(1) < p``."""
    padded = TF.pad(img, [padding])
    top, left, _, _ = T.RandomCrop.get_params(padded, size)
    flip = bool(torch.rand(1) < flip_p)
    return top, left, flip


def tv_crop_flip(img: torch.Tensor, top: int, left: int, flip: bool, size: Tuple[int, int], padding: int,
                 fill: float = 0) -> torch.Tensor:
    """torchvision functional pad -> crop -> hflip of one (C, H, W) image."""
    out = TF.crop(TF.pad(img, [padding], fill=fill), top, left, size[0], size[1])
    return TF.hflip(out) if flip else out


# ---------------------------------------------------------------- CAJ ChannelRandomErasing
def caj_erasing_params(rng: random.Random, height: int, width: int, p: float = 0.5, sl: float = 0.02,
                       sh: float = 0.4, r1: float = 0.3) -> Tuple[bool, int, int, int, int]:
    """CAJ's loop: ``(applied, top, left, h, w)``; applied False if skipped or no try fitted."""
    if rng.uniform(0, 1) > p:
        return False, 0, 0, 0, 0
    for _ in range(100):
        area = height * width
        target_area = rng.uniform(sl, sh) * area
        aspect_ratio = rng.uniform(r1, 1 / r1)
        h = int(round(math.sqrt(target_area * aspect_ratio)))
        w = int(round(math.sqrt(target_area / aspect_ratio)))
        if w < width and h < height:
            return True, rng.randint(0, height - h), rng.randint(0, width - w), h, w
    return False, 0, 0, 0, 0


def caj_erase(img: torch.Tensor, top: int, left: int, h: int, w: int, value: Sequence[float]) -> torch.Tensor:
    out = img.clone()
    if out.shape[0] == 3:
        for c in range(3):
            out[c, top:top + h, left:left + w] = value[c]
    else:
        out[0, top:top + h, left:left + w] = value[0]
    return out


# ---------------------------------------------------------------- CAJ channel operations
def caj_exchange_code(rng: random.Random, gray: int = 2) -> int:
    """ChannelExchange(gray): 0/1/2 replicate, anything larger grays (code 3)."""
    idx = rng.randint(0, gray)
    return idx if idx <= 2 else 3


def caj_adapgray_code(rng: random.Random, p: float = 0.5) -> int:
    """ChannelAdapGray(probability=p): 0/1/2 replicate, 3 gray, 4 unchanged."""
    idx = rng.randint(0, 3)
    if idx <= 2:
        return idx
    return 4 if rng.uniform(0, 1) > p else 3


def caj_channel(img: torch.Tensor, code: int) -> torch.Tensor:
    out = img.clone()
    if code <= 2:
        for c in range(3):
            out[c] = img[code]
    elif code == 3:
        x = img.float()
        g = GRAY[0] * x[0] + GRAY[1] * x[1] + GRAY[2] * x[2]
        g = g if img.is_floating_point() else g.round().clamp(0, 255)
        for c in range(3):
            out[c] = g.to(img.dtype)
    return out


# ---------------------------------------------------------------- statistics
def ks_two_sample(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic (max distance of the empirical CDFs)."""
    a, b = np.sort(np.asarray(a, np.float64)), np.sort(np.asarray(b, np.float64))
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / len(a)
    fb = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))


def ks_critical(n: int, m: int, alpha: float = 1e-3) -> float:
    """Asymptotic two-sample KS critical value at level ``alpha``."""
    return math.sqrt(-0.5 * math.log(alpha / 2)) * math.sqrt((n + m) / (n * m))
