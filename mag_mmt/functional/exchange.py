"""MAG as tensor functions: sample exchange boxes, build the mask, exchange, match partners.

Layout (kornia style: *sample parameters* -> *apply parameters*):

* :func:`sample_exchange_params` draws, per pair, the apply flag, the area fraction ``A``,
  the aspect ratio ``r`` and the box centre, and turns them into integer boxes.
* :func:`exchange_mask` turns boxes into one batched boolean mask ``(B, 1, H, W)``.
* :func:`modality_exchange` applies boxes to ``(B, C, H, W)`` image pairs with two ``torch.where``.
* :func:`match_partners` pairs images by identity when labels are given (vectorised).

Sampling law (docs/method.md#mag-sampling-law)::

    A ~ U[scale[0], scale[1]]          r ~ U[ratio[0], ratio[1]]       (ratio = h / w)
    h = round(sqrt(S * A * r)) >= 1    w = round(sqrt(S * A / r)) >= 1  (S = H * W)
    centre (yc, xc) uniform over the pixel grid; box rows [yc - h//2, yc - h//2 + h) and
    columns [xc - w//2, xc - w//2 + w), clipped to the image.

The centre pixel always lies in the clipped box, so an applied box is never empty.

Example:
    >>> import torch
    >>> from mag_mmt.functional import modality_exchange, sample_exchange_params
    >>> v, t = torch.zeros(2, 3, 8, 8), torch.ones(2, 1, 8, 8)
    >>> prm = sample_exchange_params(2, 8, 8, p=1.0, generator=torch.Generator().manual_seed(0))
    >>> v2, t2 = modality_exchange(v, t, prm["boxes"], prm["batch_prob"])
    >>> bool(v2.sum() > 0), tuple(t2.shape)
    (True, (2, 3, 8, 8))
"""

from __future__ import annotations

import math
from typing import Dict, Literal, Optional, Tuple, Union

import torch
from torch import Tensor

from mag_mmt._validation import check_integer, check_same_device, check_tensor, is_compiling

__all__ = ["sample_exchange_params", "exchange_mask", "modality_exchange", "match_partners",
           "DEFAULT_SCALE", "DEFAULT_RATIO"]

#: MAG's default box-area range ``[A_l, A_h]`` (fraction of the image; ours, the paper gives no values)
DEFAULT_SCALE: Tuple[float, float] = (0.02, 0.4)
#: MAG's default aspect-ratio range ``[r_l, r_h]`` of ``r = h / w`` (ours)
DEFAULT_RATIO: Tuple[float, float] = (0.3, 3.3)

RatioSampling = Literal["uniform", "log_uniform"]
Placement = Literal["clip", "inside"]
_IMAGE_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8)


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------
def _check_range(value: Tuple[float, float], name: str, low: float, high: float) -> Tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of numbers (low, high), got {value!r}") from None
    if not (low <= a <= b <= high) or not (math.isfinite(a) and math.isfinite(b)):
        raise ValueError(f"{name} must satisfy {low} <= low <= high <= {high}, got ({a}, {b})")
    return a, b


def _check_options(p: float, scale: Tuple[float, float], ratio: Tuple[float, float],
                   ratio_sampling: str, placement: str) -> Tuple[float, Tuple[float, float], Tuple[float, float]]:
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must lie in [0, 1], got {p}")
    scale = _check_range(scale, "scale", 0.0, 1.0)
    ratio = _check_range(ratio, "ratio", 0.0, math.inf)
    if ratio[0] <= 0.0:
        raise ValueError(f"ratio must be positive, got {ratio}")
    if ratio_sampling not in ("uniform", "log_uniform"):
        raise ValueError(f"ratio_sampling must be 'uniform' or 'log_uniform', got {ratio_sampling!r}")
    if placement not in ("clip", "inside"):
        raise ValueError(f"placement must be 'clip' or 'inside', got {placement!r}")
    return p, scale, ratio


def _check_images(visible: Tensor, thermal: Tensor, *, same_batch: bool) -> None:
    check_tensor(visible, "visible", 4)
    check_tensor(thermal, "thermal", 4)
    check_same_device(visible=visible, thermal=thermal)
    for name, x in (("visible", visible), ("thermal", thermal)):
        if x.dtype not in _IMAGE_DTYPES:
            raise ValueError(f"{name} must be a float or uint8 image batch, got dtype {x.dtype}")
    if visible.dtype != thermal.dtype:
        raise ValueError(f"visible and thermal must have one dtype, got {visible.dtype} and {thermal.dtype}")
    if visible.shape[-2:] != thermal.shape[-2:]:
        raise ValueError(
            "visible and thermal must have the same spatial size (H, W), got "
            f"{tuple(visible.shape[-2:])} and {tuple(thermal.shape[-2:])}; resize them first"
        )
    cv, ct = visible.shape[1], thermal.shape[1]
    if cv != ct and ct != 1:
        raise ValueError(
            f"thermal must have as many channels as visible ({cv}) or 1 (repeated), got {ct}"
        )
    if same_batch and visible.shape[0] != thermal.shape[0]:
        raise ValueError(
            "visible and thermal must have the same batch size when pairs are aligned by index, got "
            f"{visible.shape[0]} and {thermal.shape[0]} (pass visible_labels and thermal_labels to pair "
            "by identity instead)"
        )


def _check_boxes(boxes: Tensor, name: str, batch: int) -> None:
    check_tensor(boxes, name, 2)
    if boxes.shape != (batch, 4):
        raise ValueError(f"{name} must have shape ({batch}, 4) (x1, y1, x2, y2), got {tuple(boxes.shape)}")
    check_integer(boxes, name)


def _check_flags(flags: Tensor, name: str, batch: int) -> None:
    check_tensor(flags, name, 1)
    if flags.shape[0] != batch or flags.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool tensor of shape ({batch},), got {flags.dtype} {tuple(flags.shape)}")


# --------------------------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------------------------
def sample_exchange_params(
    batch_size: int,
    height: int,
    width: int,
    *,
    p: float = 0.5,
    scale: Tuple[float, float] = DEFAULT_SCALE,
    ratio: Tuple[float, float] = DEFAULT_RATIO,
    same_on_batch: bool = False,
    ratio_sampling: RatioSampling = "uniform",
    placement: Placement = "clip",
    device: Optional[Union[torch.device, str]] = None,
    generator: Optional[torch.Generator] = None,
) -> Dict[str, Tensor]:
    """Draw the exchange box of ``batch_size`` pairs of ``height x width`` images.

    All draws come from one ``torch.rand((B, 5))`` call on ``device`` (columns: apply, area,
    ratio, centre y, centre x), so a seeded ``generator`` reproduces them; nothing is read back
    to the host.

    Sampling, per pair (``S = height * width``):

    * applied with probability ``p`` (``u < p``: ``p = 0`` never, ``p = 1`` always);
    * area fraction ``A ~ U[scale[0], scale[1]]``;
    * aspect ratio ``r = h / w``: ``r ~ U[ratio[0], ratio[1]]`` (``"uniform"``, our reading and
      the original random erasing of Zhong et al.) or ``log r ~ U[log ratio[0], log ratio[1]]``
      (``"log_uniform"``, as torchvision's and timm's ``RandomErasing``);
    * ``h = max(1, round(sqrt(S A r)))``, ``w = max(1, round(sqrt(S A / r)))``;
    * ``placement="clip"`` (our reading): centre pixel ``(yc, xc)`` uniform over the grid, box
      ``[yc - h//2, yc - h//2 + h) x [xc - w//2, xc - w//2 + w)`` clipped to the image, so
      the exchanged area is at most ``h * w`` and smaller near the border;
      ``placement="inside"`` (kornia/torchvision style): ``h, w`` clamped to the image and the
      top-left corner uniform among positions that keep the whole box inside.

    Returns a dict of tensors on ``device``:
    ``batch_prob`` (B,) bool, ``area`` (B,) and ``ratio`` (B,) float32 (the draws of ``A``, ``r``),
    ``size`` (B, 2) int64 (``h, w`` before clipping), ``center`` (B, 2) int64 (``yc, xc``) and
    ``boxes`` (B, 4) int64 ``(x1, y1, x2, y2)``, half-open: rows ``y1 <= y < y2``.

    Example:
        >>> params = sample_exchange_params(4, 288, 144, p=1.0, generator=torch.Generator().manual_seed(0))
        >>> params["boxes"].shape, bool(params["batch_prob"].all())
        (torch.Size([4, 4]), True)
    """
    p, scale, ratio = _check_options(p, scale, ratio, ratio_sampling, placement)
    if batch_size < 0 or height < 1 or width < 1:
        raise ValueError(f"need batch_size >= 0 and a non-empty image, got {batch_size}, {height}x{width}")
    if generator is not None and device is None:
        device = generator.device
    rows = 1 if same_on_batch else batch_size
    u = torch.rand((rows, 5), device=device, generator=generator, dtype=torch.float32)
    if same_on_batch:
        u = u.expand(batch_size, 5)
    apply = u[:, 0] < p
    area = scale[0] + (scale[1] - scale[0]) * u[:, 1]
    if ratio_sampling == "uniform":
        r = ratio[0] + (ratio[1] - ratio[0]) * u[:, 2]
    else:
        lo, hi = math.log(ratio[0]), math.log(ratio[1])
        r = torch.exp(lo + (hi - lo) * u[:, 2])
    target = area * float(height * width)
    h = torch.round(torch.sqrt(target * r)).clamp(min=1.0).long()
    w = torch.round(torch.sqrt(target / r)).clamp(min=1.0).long()
    if placement == "clip":
        yc = torch.floor(u[:, 3] * height).long().clamp(max=height - 1)
        xc = torch.floor(u[:, 4] * width).long().clamp(max=width - 1)
        y0, x0 = yc - h // 2, xc - w // 2
        y1, x1 = y0.clamp(min=0), x0.clamp(min=0)
        y2, x2 = (y0 + h).clamp(max=height), (x0 + w).clamp(max=width)
    else:
        hi_, wi_ = h.clamp(max=height), w.clamp(max=width)
        y1 = torch.floor(u[:, 3] * (height - hi_ + 1)).long().clamp(max=height - hi_)
        x1 = torch.floor(u[:, 4] * (width - wi_ + 1)).long().clamp(max=width - wi_)
        y2, x2 = y1 + hi_, x1 + wi_
        yc, xc = y1 + hi_ // 2, x1 + wi_ // 2
    return {
        "batch_prob": apply,
        "area": area,
        "ratio": r,
        "size": torch.stack([h, w], dim=1),
        "center": torch.stack([yc, xc], dim=1),
        "boxes": torch.stack([x1, y1, x2, y2], dim=1),
    }


# --------------------------------------------------------------------------------------------
# applying
# --------------------------------------------------------------------------------------------
def _box_bands(boxes: Tensor, height: int, width: int, apply: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """Row test (B, H) (False for rows of pairs not applied) and column test (B, W)."""
    ys = torch.arange(height, device=boxes.device)
    xs = torch.arange(width, device=boxes.device)
    in_y = (ys >= boxes[:, 1:2]) & (ys < boxes[:, 3:4])
    in_x = (xs >= boxes[:, 0:1]) & (xs < boxes[:, 2:3])
    if apply is not None:
        in_y = in_y & apply.unsqueeze(1)
    return in_y, in_x


def _box_mask(boxes: Tensor, height: int, width: int, apply: Optional[Tensor], on: int) -> Tensor:
    """uint8 (B, 1, H, W): ``on`` inside the applied boxes, 0 elsewhere: the outer product of the
    row and column tests as one uint8 multiply (about 2x faster on CPU than a broadcast bool ``&``)."""
    in_y, in_x = _box_bands(boxes, height, width, apply)
    rows = in_y.to(torch.uint8) * on if on != 1 else in_y.to(torch.uint8)
    return (rows.unsqueeze(2) * in_x.to(torch.uint8).unsqueeze(1)).unsqueeze(1)


def exchange_mask(boxes: Tensor, height: int, width: int, apply: Optional[Tensor] = None) -> Tensor:
    """Boolean mask ``(B, 1, height, width)``, True inside each half-open box ``(x1, y1, x2, y2)``
    of ``boxes`` (B, 4) and, if ``apply`` (B,) bool is given, only where ``apply`` is True.

    Built from a ``(B, H)`` row test and a ``(B, W)`` column test combined once (kornia's
    ``bbox_to_mask`` does the same with inclusive float corners; here it stays integer).

    Example:
        >>> exchange_mask(torch.tensor([[1, 0, 3, 1]]), 2, 4)[0, 0].int()
        tensor([[0, 1, 1, 0],
                [0, 0, 0, 0]], dtype=torch.int32)
    """
    if is_compiling():
        # inductor fuses this anyway; and its CPU codegen fails on a uint8 -> bool view
        in_y, in_x = _box_bands(boxes, height, width, apply)
        return (in_y.unsqueeze(2) & in_x.unsqueeze(1)).unsqueeze(1)
    return _box_mask(boxes, height, width, apply, 1).view(torch.bool)


def _bitwise_path(x: Tensor) -> bool:
    # uint8 on CPU: an exact bitwise select (x ^ ((x ^ y) & M)) beats torch.where's broadcast
    # uint8 kernel there by about 2.5x (benchmarks/bench_augment.py); floats keep torch.where
    # (differentiable, and faster for them).
    return x.dtype == torch.uint8 and x.device.type == "cpu"


def _take(boxes: Tensor, apply: Optional[Tensor], source: Tensor, target: Tensor) -> Tensor:
    """``target`` with ``source``'s pixels inside the applied boxes."""
    height, width = target.shape[-2:]
    if _bitwise_path(target):
        diff = torch.bitwise_xor(target, source).bitwise_and_(_box_mask(boxes, height, width, apply, 255))
        return torch.bitwise_xor(target, diff)
    return torch.where(exchange_mask(boxes, height, width, apply), source, target)


def _swap(boxes: Tensor, apply: Optional[Tensor], visible: Tensor, thermal: Tensor) -> Tuple[Tensor, Tensor]:
    """Both directions with one mask."""
    height, width = visible.shape[-2:]
    if _bitwise_path(visible):
        diff = torch.bitwise_xor(visible, thermal).bitwise_and_(_box_mask(boxes, height, width, apply, 255))
        return torch.bitwise_xor(visible, diff), torch.bitwise_xor(thermal, diff)
    mask = exchange_mask(boxes, height, width, apply)
    return torch.where(mask, thermal, visible), torch.where(mask, visible, thermal)


def modality_exchange(
    visible: Tensor,
    thermal: Tensor,
    boxes: Tensor,
    apply: Optional[Tensor] = None,
    *,
    thermal_boxes: Optional[Tensor] = None,
    thermal_apply: Optional[Tensor] = None,
    visible_partner: Optional[Tensor] = None,
    thermal_partner: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """Exchange boxes between visible and thermal images (the functional core of MAG).

    Aligned form (no partner given): pair ``i`` is ``(visible[i], thermal[i])``; inside
    ``boxes[i]`` (where ``apply[i]``), ``visible'`` takes ``thermal``'s pixels and ``thermal'``
    takes ``visible``'s. One mask, two ``torch.where`` (uint8 on CPU: the same selection done
    bitwise, exact and faster there): no host sync, no per-pair loop,
    ``torch.compile(fullgraph=True)`` compiles it.

    Partnered form: ``visible_partner`` (Bv,) indexes the thermal image whose pixels
    ``visible[i]`` receives in ``boxes[i]``, ``thermal_partner`` (Bt,) the visible image that
    ``thermal[j]`` receives from in ``thermal_boxes[j]``; ``-1`` means no partner (unchanged).

    Args:
        visible: (Bv, C, H, W) float or uint8.
        thermal: (Bt, C or 1, H, W), same dtype; one channel is broadcast (repeated) to C.
        boxes: (Bv, 4) int64 ``(x1, y1, x2, y2)``, half-open.
        apply: optional (Bv,) bool; False rows are left unchanged.
        thermal_boxes, thermal_apply: the thermal side; default to ``boxes``/``apply`` (aligned).
        visible_partner, thermal_partner: (Bv,) / (Bt,) int64 partner indices, or None.

    Returns:
        ``(visible', thermal')``, both (B, C, H, W) in the input dtype.

    Example:
        >>> v, t = torch.zeros(2, 3, 4, 4), torch.ones(2, 1, 4, 4)
        >>> v2, t2 = modality_exchange(v, t, torch.tensor([[0, 0, 2, 2], [1, 1, 4, 4]]))
        >>> int(v2.sum()), int(t2.sum()), tuple(t2.shape)
        (39, 57, (2, 3, 4, 4))
    """
    partnered = visible_partner is not None or thermal_partner is not None
    _check_images(visible, thermal, same_batch=not partnered)
    bv, bt = visible.shape[0], thermal.shape[0]
    _check_boxes(boxes, "boxes", bv)
    if apply is not None:
        _check_flags(apply, "apply", bv)
    if not partnered:
        if thermal_boxes is not None or thermal_apply is not None:
            raise ValueError("thermal_boxes/thermal_apply need visible_partner and thermal_partner")
        return _swap(boxes, apply, visible, thermal)
    if visible_partner is None or thermal_partner is None:
        raise ValueError("give both visible_partner and thermal_partner, or neither")
    if thermal_boxes is None:
        raise ValueError("the partnered form needs thermal_boxes (Bt, 4)")
    _check_boxes(thermal_boxes, "thermal_boxes", bt)
    if thermal_apply is not None:
        _check_flags(thermal_apply, "thermal_apply", bt)
    for name, idx, n in (("visible_partner", visible_partner, bv), ("thermal_partner", thermal_partner, bt)):
        check_tensor(idx, name, 1)
        check_integer(idx, name)
        if idx.shape[0] != n:
            raise ValueError(f"{name} must have length {n}, got {idx.shape[0]}")
    has_v = visible_partner >= 0
    has_t = thermal_partner >= 0
    apply_v = has_v if apply is None else apply & has_v
    apply_t = has_t if thermal_apply is None else thermal_apply & has_t
    # an empty other side means no partner at all: any stand-in of the right shape will do
    from_t = thermal.index_select(0, visible_partner.clamp(min=0).long()) if bt else visible.new_zeros(thermal.shape[1:]).expand(bv, -1, -1, -1)
    from_v = visible.index_select(0, thermal_partner.clamp(min=0).long()) if bv else visible.new_zeros(visible.shape[1:]).expand(bt, -1, -1, -1)
    return _take(boxes, apply_v, from_t, visible), _take(thermal_boxes, apply_t, from_v, thermal)


# --------------------------------------------------------------------------------------------
# label-aware partners
# --------------------------------------------------------------------------------------------
def _shuffled_groups(labels: Tensor, generator: Optional[torch.Generator]) -> Tuple[Tensor, Tensor, Tensor]:
    """Sorted labels, original indices in that order (random order inside each identity), and
    each image's random rank inside its identity."""
    n = labels.shape[0]
    perm = torch.randperm(n, device=labels.device, generator=generator)
    sorted_labels, order = torch.sort(labels[perm], stable=True)
    order = perm[order]
    rank_sorted = torch.arange(n, device=labels.device) - torch.searchsorted(sorted_labels, sorted_labels)
    rank = torch.empty_like(rank_sorted).scatter_(0, order, rank_sorted)
    return sorted_labels, order, rank


def _pick(labels: Tensor, rank: Tensor, other_sorted: Tensor, other_order: Tensor) -> Tensor:
    start = torch.searchsorted(other_sorted, labels)
    count = torch.searchsorted(other_sorted, labels, right=True) - start
    if other_sorted.shape[0] == 0:
        return torch.full_like(labels, -1, dtype=torch.long)
    pos = (start + rank % count.clamp(min=1)).clamp(max=other_sorted.shape[0] - 1)
    return torch.where(count > 0, other_order[pos], torch.full_like(pos, -1))


def match_partners(
    visible_labels: Tensor,
    thermal_labels: Tensor,
    generator: Optional[torch.Generator] = None,
) -> Tuple[Tensor, Tensor]:
    """Random same-identity partners of the other modality, vectorised (sort + searchsorted).

    If the labels are aligned (same length and ``visible_labels == thermal_labels``), the
    partner is the same batch index. Otherwise, inside each identity with ``nv`` visible and
    ``nt`` thermal images, both sides are shuffled and the ``k``-th visible is matched with the
    ``k``-th thermal: ``min(nv, nt)`` mutual pairs. The extra images of the larger side get a
    random one-way partner (``k mod n``). Identities missing from the other side get ``-1``.
    The alignment test is a 0-d tensor used in ``torch.where``: nothing syncs with the host.

    Returns:
        ``(visible_partner (Bv,), thermal_partner (Bt,))``, int64 indices into the other batch.

    Example:
        >>> vp, tp = match_partners(torch.tensor([3, 5, 7]), torch.tensor([5, 3, 9]))
        >>> vp.tolist(), tp.tolist()
        ([1, 0, -1], [1, 0, -1])
    """
    for name, x in (("visible_labels", visible_labels), ("thermal_labels", thermal_labels)):
        check_tensor(x, name, 1)
        check_integer(x, name)
    check_same_device(visible_labels=visible_labels, thermal_labels=thermal_labels)
    lv, lt = visible_labels.long(), thermal_labels.long()
    sv, ov, rv = _shuffled_groups(lv, generator)
    st, ot, rt = _shuffled_groups(lt, generator)
    vp = _pick(lv, rv, st, ot)
    tp = _pick(lt, rt, sv, ov)
    if lv.shape[0] == lt.shape[0]:
        aligned = (lv == lt).all()
        index = torch.arange(lv.shape[0], device=lv.device)
        vp = torch.where(aligned, index, vp)
        tp = torch.where(aligned, index, tp)
    return vp, tp
