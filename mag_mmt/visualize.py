"""PNG pictures with PIL: a generic image grid, the MAG figure (visible, thermal,
visible', thermal' per row, like Figure 6 of the paper), CMC curves, training curves (one
panel per logged quantity, one line per run; or one run's step log) and a table rendered as a picture."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

__all__ = ["to_uint8_image", "save_image_grid", "save_augmentation_grid", "save_cmc_plot",
           "save_training_curves", "save_table_image", "plot_training_curves"]

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


def _save_png(img: "Image.Image", path: PathLike) -> Path:
    """Write a PIL image as PNG, creating the folder; returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out, format="PNG")
    return out


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
    return _save_png(canvas, path)


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


_PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
            (140, 86, 75), (227, 119, 194), (127, 127, 127)]


def save_cmc_plot(
    path: PathLike,
    curves: "dict[str, Sequence[float]]",
    *,
    title: str = "CMC",
    size: "tuple[int, int]" = (640, 420),
) -> Path:
    """Write a PNG line chart of CMC curves: ``curves[name][k]`` is the rank-(k+1) accuracy
    (a fraction in [0, 1]). Drawn with PIL only (no plotting dependency).

    Example:
        >>> import tempfile
        >>> p = save_cmc_plot(tempfile.mkdtemp() + "/cmc.png", {"a": [0.2, 0.5, 0.7], "b": [0.3, 0.4, 0.9]})
        >>> p.name
        'cmc.png'
    """
    from PIL import Image, ImageDraw

    if not curves:
        raise ValueError("save_cmc_plot needs at least one curve")
    for name, cmc in curves.items():
        values = np.asarray(cmc, dtype=float)
        if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values)):
            raise ValueError(f"curve {name!r} must be a non-empty 1-D sequence of finite numbers")
        if values.min() < 0 or values.max() > 1:
            raise ValueError(f"curve {name!r} must hold fractions in [0, 1]")
    width, height = size
    left, right, top, bottom = 56, 150, 34, 40
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    x0, x1, y0, y1 = left, width - right, height - bottom, top
    max_rank = max(len(c) for c in curves.values())

    def px(rank: float, value: float) -> "tuple[float, float]":
        fx = 0.0 if max_rank == 1 else (rank - 1) / (max_rank - 1)
        return x0 + fx * (x1 - x0), y0 + value * (y1 - y0)

    for tick in range(0, 11, 2):
        _, y = px(1, tick / 10)
        draw.line([(x0, y), (x1, y)], fill=(225, 225, 225))
        draw.text((x0 - 34, y - 6), f"{tick * 10:3d}%", fill=(60, 60, 60))
    for rank in sorted({1, *range(5, max_rank + 1, 5), max_rank}):
        x, _ = px(rank, 0)
        draw.text((x - 6, y0 + 6), str(rank), fill=(60, 60, 60))
    draw.rectangle([x0, y1, x1, y0], outline=(0, 0, 0))
    draw.text((x0, 10), title, fill=(0, 0, 0))
    draw.text(((x0 + x1) / 2 - 14, height - 18), "rank", fill=(60, 60, 60))
    for i, (name, cmc) in enumerate(curves.items()):
        colour = _PALETTE[i % len(_PALETTE)]
        points = [px(k + 1, float(v)) for k, v in enumerate(cmc)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for x, y in points:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        ly = top + 10 + 18 * i
        draw.line([(x1 + 12, ly + 6), (x1 + 32, ly + 6)], fill=colour, width=3)
        draw.text((x1 + 38, ly), f"{name} ({100 * float(cmc[0]):.1f}%)", fill=(0, 0, 0))
    return _save_png(img, path)


def _nice_range(values: "list[float]") -> "tuple[float, float]":
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        pad = max(abs(hi) * 0.05, 1e-3)
        return lo - pad, hi + pad
    pad = 0.05 * (hi - lo)
    return lo - pad, hi + pad


#: what :func:`plot_training_curves` draws by default, with the panel titles
CURVE_TITLES = {"loss": "loss (total)", "id_loss": "CE (identity)", "triplet_loss": "triplet",
                "mman": "MMAN", "mmap": "MMAP", "lr": "learning rate", "rank1": "rank-1 (eval)",
                "mAP": "mAP (eval)"}


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def save_training_curves(
    path: PathLike,
    histories: "dict[str, Sequence[dict]]",
    *,
    keys: "Sequence[str] | None" = None,
    title: str = "training curves",
    panel_size: "tuple[int, int]" = (420, 260),
    x: str = "epoch",
) -> Path:
    """Write a PNG of training curves: one panel per quantity, one line per run.

    ``histories[name]`` is a run's list of rows: the per-epoch rows :func:`mag_mmt.training.train`
    returns (``{"epoch": 1, "loss": ..., "id_loss": ..., ...}``) or the rows of a run's
    ``history.csv`` (:func:`mag_mmt.runlog.read_history`). The x axis is each row's ``x``
    (``"epoch"`` or ``"step"``; its position when missing). Where a run has per-step rows
    (``kind == "step"``) holding a quantity, that quantity is drawn from them; otherwise from
    every row holding it (epoch and final evaluations). ``keys``: the quantities to draw
    (default: those of :data:`CURVE_TITLES` that some row holds). This is the one
    training-curve plot of the package: ``mag-mmt ablation`` draws its arms with it, and
    ``mag-mmt train`` / ``mag-mmt plot`` one run (:func:`plot_training_curves`).

    Example:
        >>> import tempfile
        >>> rows = [{"epoch": 1, "loss": 2.0, "id_loss": 1.5}, {"epoch": 2, "loss": 1.2, "id_loss": 1.0}]
        >>> save_training_curves(tempfile.mkdtemp() + "/curves.png", {"run": rows}).name
        'curves.png'
    """
    from PIL import Image, ImageDraw

    xkey = x  # the loops below use x for pixel coordinates
    if not histories or not any(len(rows) for rows in histories.values()):
        raise ValueError("save_training_curves needs at least one run with at least one row")
    present = {k for rows in histories.values() for row in rows for k in row}
    if keys is None:
        keys = [k for k in CURVE_TITLES if k in present]
    keys = list(keys)
    missing = [k for k in keys if k not in present]
    if not keys or missing:
        raise ValueError(f"no row holds {missing or 'any quantity to draw'}; rows hold {sorted(present)}")
    pw, ph = panel_size
    legend_w, header = 170, 26
    cols = min(2, len(keys))
    nrows = (len(keys) + cols - 1) // cols
    img = Image.new("RGB", (cols * pw + legend_w, header + nrows * ph), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.text((8, 8), title, fill=(0, 0, 0))
    names = list(histories)
    for n, key in enumerate(keys):
        series = {}
        for name in names:
            rows = [(i, row) for i, row in enumerate(histories[name]) if _finite(row.get(key))]
            rows = [(i, row) for i, row in rows if row.get("kind") == "step"] or rows
            pts = sorted((float(row[xkey]) if _finite(row.get(xkey)) else float(i + 1), float(row[key]))
                         for i, row in rows)
            if pts:
                series[name] = pts
        if not series:
            raise ValueError(f"{key!r} has no finite value in any run")
        xs = [x for pts in series.values() for x, _ in pts]
        ys = [y for pts in series.values() for _, y in pts]
        (xlo, xhi), (ylo, yhi) = (min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1), _nice_range(ys)
        left = (n % cols) * pw + 60
        top = header + (n // cols) * ph + 20
        x0, x1, y0, y1 = left, left + pw - 80, top + ph - 60, top

        def px(x: float, y: float) -> "tuple[float, float]":
            return x0 + (x - xlo) / (xhi - xlo) * (x1 - x0), y0 + (y - ylo) / (yhi - ylo) * (y1 - y0)

        digits = 3 + max(0, int(np.ceil(np.log10(max(abs(ylo), abs(yhi), 1e-12) / (yhi - ylo)))))
        for i in range(5):
            value = ylo + (yhi - ylo) * i / 4
            _, y = px(xlo, value)
            draw.line([(x0, y), (x1, y)], fill=(225, 225, 225))
            draw.text((x0 - 52, y - 6), f"{value:8.{digits}g}"[-9:], fill=(60, 60, 60))
        for value in sorted({xlo, xhi, (xlo + xhi) / 2}):
            x, _ = px(value, ylo)
            draw.text((x - 8, y0 + 6), f"{value:g}", fill=(60, 60, 60))
        draw.rectangle([x0, y1, x1, y0], outline=(0, 0, 0))
        draw.text((x0, top - 16), f"{CURVE_TITLES.get(key, key)} (x: {xkey})", fill=(0, 0, 0))
        for name, pts in series.items():
            colour = _PALETTE[names.index(name) % len(_PALETTE)]
            points = [px(x, y) for x, y in pts]
            if len(points) > 1:
                draw.line(points, fill=colour, width=2)
            for x, y in points:
                draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
    for i, name in enumerate(names):
        colour = _PALETTE[i % len(_PALETTE)]
        lx, ly = cols * pw + 8, header + 20 + 18 * i
        draw.line([(lx, ly + 6), (lx + 20, ly + 6)], fill=colour, width=3)
        draw.text((lx + 26, ly), str(name), fill=(0, 0, 0))
    return _save_png(img, path)


def save_table_image(
    path: PathLike,
    header: Sequence[str],
    rows: "Sequence[Sequence[object]]",
    *,
    title: str = "",
    notes: Sequence[str] = (),
) -> Path:
    """Write a table as a PNG: a header line, one line per row (cells as text, columns as
    wide as their widest cell), then optional note lines.

    Example:
        >>> import tempfile
        >>> save_table_image(tempfile.mkdtemp() + "/t.png", ["arm", "rank-1"], [["B", "31.2"]]).name
        't.png'
    """
    from PIL import Image, ImageDraw

    header = [str(h) for h in header]
    cells = [[str(c) for c in row] for row in rows]
    if not header or any(len(row) != len(header) for row in cells):
        raise ValueError(f"every row must have {len(header)} cells (one per header entry)")
    char_w, line_h, pad = 6, 16, 10  # PIL's default bitmap font is 6 px wide
    widths = [max(len(r[j]) for r in [header, *cells]) * char_w + 14 for j in range(len(header))]
    lines = [title] if title else []
    width = max([sum(widths)] + [len(t) * char_w for t in [*lines, *notes]]) + 2 * pad
    height = 2 * pad + line_h * (len(lines) + 1 + len(cells) + len(notes)) + (8 if notes else 0) + 4
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    y = pad
    for text in lines:
        draw.text((pad, y), text, fill=(0, 0, 0))
        y += line_h
    for i, row in enumerate([header, *cells]):
        if i % 2 == 0 and i:
            draw.rectangle([pad, y - 1, pad + sum(widths), y + line_h - 3], fill=(242, 242, 242))
        x = pad
        for j, text in enumerate(row):
            draw.text((x + (widths[j] - 14 - len(text) * char_w if j else 0), y), text, fill=(0, 0, 0))
            x += widths[j]
        y += line_h
        if i == 0:
            draw.line([(pad, y - 2), (pad + sum(widths), y - 2)], fill=(0, 0, 0))
    y += 8 if notes else 0
    for text in notes:
        draw.text((pad, y), text, fill=(70, 70, 70))
        y += line_h
    return _save_png(img, path)
def plot_training_curves(rows: "list[dict]", path: PathLike, keys: "Optional[Sequence[str]]" = None) -> Path:
    """Write a PNG of training curves: one small panel per quantity against the step.

    ``rows`` are history rows (:func:`mag_mmt.runlog.read_history`): dicts with a ``step``
    (else ``epoch``) and any of ``keys`` (default: loss, CE, triplet, MMAN, MMAP, learning
    rate, rank-1, mAP; see :data:`CURVE_TITLES`). A quantity the per-step rows
    (``kind == "step"``) hold is drawn from them, otherwise from every row holding it (the
    epoch and final evaluations). Quantities no row holds are left out; ``ValueError`` when
    nothing is left to draw. Returns the path written.

    Example:
        >>> import tempfile
        >>> rows = [{"kind": "step", "step": s, "loss": 2.0 / s, "lr": 0.01} for s in (1, 2, 3)]
        >>> rows.append({"kind": "epoch", "step": 3, "rank1": 0.4, "mAP": 0.3})
        >>> plot_training_curves(rows, tempfile.mkdtemp() + "/curves.png").name
        'curves.png'
    """
    keys = list(CURVE_TITLES) if keys is None else list(keys)
    x = "step" if any(_finite(r.get("step")) for r in rows) else "epoch"
    drawable = [k for k in keys if any(_finite(r.get(k)) for r in rows)]
    if not drawable:
        raise ValueError(f"no row holds a finite value of {keys} (with a step or epoch) to draw")
    return save_training_curves(path, {"run": rows}, keys=drawable, x=x, panel_size=(320, 200))
