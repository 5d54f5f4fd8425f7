"""PNG pictures with PIL: a generic image grid and the MAG figure (visible, thermal,
visible', thermal' per row, like Figure 6 of the paper)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

__all__ = ["to_uint8_image", "save_image_grid", "save_augmentation_grid"]

PathLike = Union[str, "os.PathLike[str]"]


def to_uint8_image(image: Tensor) -> np.ndarray:
    """A (C, H, W) or (H, W) tensor as an (H, W, 3) uint8 array for display.

    uint8 is kept. Floats already in [0, 1] are scaled by 255; other float ranges (e.g.
    mean/std-normalised images) are min-max stretched per image. One channel becomes grey.
    """
    x = image.detach().cpu()
    if x.dim() == 2:
        x = x.unsqueeze(0)
    if x.dim() != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"an image must be (1 or 3, H, W) or (H, W), got shape {tuple(image.shape)}")
    if x.dtype != torch.uint8:
        x = x.float()
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            x = (x - lo) / max(hi - lo, 1e-12)
        x = (x * 255.0).round().clamp(0, 255).to(torch.uint8)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return x.permute(1, 2, 0).contiguous().numpy()


def save_image_grid(
    path: PathLike,
    rows: Sequence[Sequence[Union[Tensor, np.ndarray]]],
    *,
    column_titles: Optional[Sequence[str]] = None,
    padding: int = 4,
    background: int = 255,
) -> Path:
    """Write a PNG grid: ``rows[i][j]`` is the image in row i, column j.

    Each cell is a (C, H, W) tensor (see :func:`to_uint8_image`) or an (H, W, 3) uint8 array
    (for example a rendered plot). Cells may differ in size: each column is as wide as its
    widest cell and each row as tall as its tallest; cells are centred. Optional column titles
    go in a header line. Returns the path written.

    Example:
        >>> import tempfile
        >>> p = save_image_grid(tempfile.mkdtemp() + "/g.png", [[torch.rand(3, 8, 4), torch.rand(1, 8, 4)]])
        >>> p.suffix
        '.png'
    """
    from PIL import Image, ImageDraw

    cells = [[c if isinstance(c, np.ndarray) else to_uint8_image(c) for c in row] for row in rows]
    if not cells or not all(cells):
        raise ValueError("rows must hold at least one row, each with at least one image")
    ncol = max(len(r) for r in cells)
    col_w = [max((r[j].shape[1] for r in cells if j < len(r)), default=0) for j in range(ncol)]
    row_h = [max(c.shape[0] for c in r) for r in cells]
    header = 14 + padding if column_titles else 0
    width = sum(col_w) + padding * (ncol + 1)
    height = header + sum(row_h) + padding * (len(cells) + 1)
    canvas = Image.new("RGB", (width, height), (background,) * 3)
    draw = ImageDraw.Draw(canvas)
    if column_titles:
        x = padding
        for j, title in enumerate(list(column_titles)[:ncol]):
            draw.text((x, padding), str(title), fill=(0, 0, 0))
            x += col_w[j] + padding
    y = header + padding
    for i, row in enumerate(cells):
        x = padding
        for j, cell in enumerate(row):
            if cell.ndim != 3 or cell.shape[2] != 3 or cell.dtype != np.uint8:
                raise ValueError(f"array cells must be (H, W, 3) uint8, got {cell.dtype} {cell.shape}")
            ox = x + (col_w[j] - cell.shape[1]) // 2
            oy = y + (row_h[i] - cell.shape[0]) // 2
            canvas.paste(Image.fromarray(cell), (ox, oy))
            x += col_w[j] + padding
        y += row_h[i] + padding
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out, format="PNG")
    return out


def save_augmentation_grid(
    path: PathLike,
    visible: Tensor,
    thermal: Tensor,
    visible_aug: Tensor,
    thermal_aug: Tensor,
    max_rows: int = 8,
    *,
    titles: Sequence[str] = ("visible", "thermal", "visible'", "thermal'"),
    scale: int = 1,
) -> Path:
    """Write the MAG picture: one row per pair (visible, thermal, visible', thermal').

    All four batches are (B, C, H, W) with the same B (thermal may have one channel);
    the first ``max_rows`` pairs are drawn, each image enlarged ``scale`` times (nearest).

    Example:
        >>> import tempfile
        >>> from mag_mmt import ModalityAugment
        >>> v, t = torch.rand(4, 3, 64, 32), torch.rand(4, 1, 64, 32)
        >>> v2, t2 = ModalityAugment(p=1.0)(v, t)
        >>> save_augmentation_grid(tempfile.mkdtemp() + "/mag.png", v, t, v2, t2).name
        'mag.png'
    """
    batches = (visible, thermal, visible_aug, thermal_aug)
    for name, x in zip(("visible", "thermal", "visible_aug", "thermal_aug"), batches):
        if not isinstance(x, Tensor) or x.dim() != 4:
            raise ValueError(f"{name} must be a (B, C, H, W) tensor")
    if len({x.shape[0] for x in batches}) != 1:
        raise ValueError(f"all four batches must hold the same number of images, got {[x.shape[0] for x in batches]}")
    if max_rows < 1 or scale < 1:
        raise ValueError(f"max_rows and scale must be >= 1, got {max_rows} and {scale}")
    n = min(int(max_rows), visible.shape[0])

    def cell(x: Tensor) -> np.ndarray:
        arr = to_uint8_image(x)
        return arr.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else arr

    rows = [[cell(x[i]) for x in batches] for i in range(n)]
    return save_image_grid(path, rows, column_titles=titles)
