"""Slow, obviously-correct references for mag_mmt.augment: Python loops over pairs and
NumPy float32 scalar arithmetic, written straight from docs/method.md#mag-sampling-law."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import torch


def reference_box(area: float, ratio: float, yc: int, xc: int, height: int, width: int) -> Tuple[int, int, int, int]:
    """The paper's box, ``placement="clip"``: h = sqrt(S A r), w = sqrt(S A / r) rounded (>= 1),
    centred at pixel (yc, xc) and clipped. Returns half-open (x1, y1, x2, y2)."""
    target = np.float32(area) * np.float32(height * width)
    h = max(1, int(np.round(np.sqrt(target * np.float32(ratio)))))
    w = max(1, int(np.round(np.sqrt(target / np.float32(ratio)))))
    top, left = yc - h // 2, xc - w // 2
    return max(left, 0), max(top, 0), min(left + w, width), min(top + h, height)


def reference_exchange(
    visible: torch.Tensor,
    thermal: torch.Tensor,
    boxes: Sequence[Sequence[int]],
    apply: Sequence[bool],
    *,
    thermal_boxes: Optional[Sequence[Sequence[int]]] = None,
    thermal_apply: Optional[Sequence[bool]] = None,
    visible_partner: Optional[Sequence[int]] = None,
    thermal_partner: Optional[Sequence[int]] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """One pair at a time with slicing. Thermal with one channel is repeated first."""
    if thermal.shape[1] == 1 and visible.shape[1] != 1:
        thermal = thermal.repeat(1, visible.shape[1], 1, 1)
    bv, bt = visible.shape[0], thermal.shape[0]
    if visible_partner is None:
        visible_partner = list(range(bv))
        thermal_partner = list(range(bt))
        thermal_boxes, thermal_apply = boxes, apply
    assert thermal_partner is not None and thermal_boxes is not None and thermal_apply is not None
    v_out, t_out = visible.clone(), thermal.clone()
    for i in range(bv):
        j = int(visible_partner[i])
        if apply[i] and j >= 0:
            x1, y1, x2, y2 = (int(c) for c in boxes[i])
            v_out[i, :, y1:y2, x1:x2] = thermal[j, :, y1:y2, x1:x2]
    for j in range(bt):
        i = int(thermal_partner[j])
        if thermal_apply[j] and i >= 0:
            x1, y1, x2, y2 = (int(c) for c in thermal_boxes[j])
            t_out[j, :, y1:y2, x1:x2] = visible[i, :, y1:y2, x1:x2]
    return v_out, t_out


def changed_rectangle(before: torch.Tensor, after: torch.Tensor) -> Optional[Tuple[int, int, int, int]]:
    """(x1, y1, x2, y2) of the pixels that differ between two (C, H, W) images if they form
    exactly one full axis-aligned rectangle; None if nothing changed; raises otherwise."""
    diff = (before != after).any(dim=0)
    if not bool(diff.any()):
        return None
    ys = [y for y in range(diff.shape[0]) if bool(diff[y].any())]
    xs = [x for x in range(diff.shape[1]) if bool(diff[:, x].any())]
    y1, y2, x1, x2 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
    if not bool(diff[y1:y2, x1:x2].all()) or int(diff.sum()) != (y2 - y1) * (x2 - x1):
        raise AssertionError("changed pixels do not form one rectangle")
    return x1, y1, x2, y2


def ks_uniform(samples: np.ndarray, low: float, high: float) -> float:
    """Kolmogorov-Smirnov statistic of ``samples`` against U[low, high]."""
    x = np.sort((np.asarray(samples, dtype=np.float64) - low) / (high - low))
    n = len(x)
    cdf_hi = np.arange(1, n + 1) / n
    cdf_lo = np.arange(0, n) / n
    return float(max(np.max(cdf_hi - x), np.max(x - cdf_lo)))
