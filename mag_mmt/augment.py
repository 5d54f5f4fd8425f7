"""Modality augmentation (MAG): exchange one random box between a visible image and a thermal
image of the same identity (docs/method.md#mag-sampling-law).

Layout (kornia style: *sample parameters* -> *apply parameters*):

* :func:`sample_exchange_params` draws, per pair, the apply flag, the area fraction ``A``,
  the aspect ratio ``r`` and the box centre, and turns them into integer boxes.
* :func:`exchange_mask` turns boxes into one batched boolean mask.
* :func:`modality_exchange` applies boxes with two ``torch.where`` calls (the functional core).
* :func:`match_partners` pairs images by identity when labels are given (vectorised).
* :class:`ModalityAugment` (two tensors) and :class:`StackedModalityAugment` (one stacked
  ``(2B, C, H, W)`` tensor, a kornia augmentation that fits in
  ``kornia.augmentation.AugmentationSequential``) are thin wrappers.

Sampling (our reading of the paper, not kornia's, torchvision's or timm's law; see
``sample_exchange_params`` and docs/method.md#comparison-with-random-erasing)::

    A ~ U[scale[0], scale[1]]          r ~ U[ratio[0], ratio[1]]       (ratio = h / w)
    h = round(sqrt(S * A * r)) >= 1    w = round(sqrt(S * A / r)) >= 1  (S = H * W)
    centre (yc, xc) uniform over the pixel grid; box rows [yc - h//2, yc - h//2 + h) and
    columns [xc - w//2, xc - w//2 + w), clipped to the image.

The centre pixel always lies in the clipped box, so an applied box is never empty.
"""

from __future__ import annotations

import math
from typing import Dict, Literal, Optional, Tuple, Union

import torch
from kornia.augmentation import IntensityAugmentationBase2D
from torch import Tensor, nn

from mag_mmt._validation import check_integer, check_same_device, check_tensor, is_compiling

__all__ = [
    "sample_exchange_params",
    "exchange_mask",
    "modality_exchange",
    "match_partners",
    "ModalityAugment",
    "StackedModalityAugment",
]

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
    scale: Tuple[float, float] = (0.02, 0.4),
    ratio: Tuple[float, float] = (0.3, 3.3),
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


# --------------------------------------------------------------------------------------------
# modules
# --------------------------------------------------------------------------------------------
class _ExchangeOptions:
    """Options shared by both module forms."""

    def _set_options(self, p: float, scale: Tuple[float, float], ratio: Tuple[float, float],
                     ratio_sampling: str, placement: str) -> None:
        self.p_pair, self.scale, self.ratio = _check_options(p, scale, ratio, ratio_sampling, placement)
        self.ratio_sampling = ratio_sampling
        self.placement = placement

    def _sample(self, batch_size: int, height: int, width: int, device: torch.device,
                generator: Optional[torch.Generator], same_on_batch: bool) -> Dict[str, Tensor]:
        return sample_exchange_params(
            batch_size, height, width, p=self.p_pair, scale=self.scale, ratio=self.ratio,
            same_on_batch=same_on_batch, ratio_sampling=self.ratio_sampling,  # type: ignore[arg-type]
            placement=self.placement, device=device, generator=generator,  # type: ignore[arg-type]
        )


class ModalityAugment(nn.Module, _ExchangeOptions):
    """Modality augmentation (MAG): with probability ``p`` per pair, exchange one random box
    between a visible image and its thermal partner. Labels are unchanged. The sampling law and
    its defaults: docs/method.md#mag-sampling-law.

    Args:
        p: probability that a pair is augmented.
        scale: range of the box area as a fraction of the image (``A``); default (0.02, 0.4).
        ratio: range of the aspect ratio ``r = h / w``; default (0.3, 3.3).
        same_on_batch: one draw (apply flag and box) for the whole batch.
        ratio_sampling: ``"uniform"`` (our reading of the paper) or ``"log_uniform"``
            (torchvision/timm).
        placement: ``"clip"`` (our reading: uniform centre, box clipped) or ``"inside"``.
        generator: an ``int`` seed (a generator is made lazily on each input device) or a
            ``torch.Generator`` (must live on the input's device); None uses torch's global RNG.

    Call ``aug(visible, thermal, visible_labels=None, thermal_labels=None, params=None)``:

    * ``visible`` (B, C, H, W), ``thermal`` (B, C or 1, H, W): float16/bfloat16/float32/64 or
      uint8, same dtype and device, same H and W. One-channel thermal is repeated to C.
    * Without labels, pairs are aligned by batch index (the AGW/CAJ sampler): no host sync.
    * With both label tensors, partners come from :func:`match_partners` (same index if the
      labels are aligned, otherwise a random same-identity image of the other modality; no
      partner: unchanged). Batch sizes may then differ. No host sync either.
    * ``params``: replay, e.g. ``aug(v, t, params=aug._params)`` reproduces the last call.

    Returns ``(visible', thermal')``, each (B, C, H, W) in the input dtype. The parameters of the
    last call are in ``aug._params`` (see :func:`sample_exchange_params`; the label path adds
    ``thermal_boxes``, ``thermal_batch_prob``, ``visible_partner``, ``thermal_partner``).

    Example:
        >>> aug = ModalityAugment(p=1.0, generator=0)
        >>> v, t = torch.rand(8, 3, 288, 144), torch.rand(8, 1, 288, 144)
        >>> v2, t2 = aug(v, t)
        >>> v3, t3 = aug(v, t, params=aug._params)
        >>> bool(torch.equal(v2, v3) and torch.equal(t2, t3)), tuple(t2.shape)
        (True, (8, 3, 288, 144))
    """

    def __init__(
        self,
        p: float = 0.5,
        scale: Tuple[float, float] = (0.02, 0.4),
        ratio: Tuple[float, float] = (0.3, 3.3),
        same_on_batch: bool = False,
        ratio_sampling: RatioSampling = "uniform",
        placement: Placement = "clip",
        generator: Optional[Union[int, torch.Generator]] = None,
    ) -> None:
        super().__init__()
        self._set_options(p, scale, ratio, ratio_sampling, placement)
        self.p = self.p_pair
        self.same_on_batch = bool(same_on_batch)
        if generator is not None and not isinstance(generator, (int, torch.Generator)):
            raise ValueError(f"generator must be an int seed or a torch.Generator, got {type(generator).__name__}")
        self._generator_arg = generator
        self._generators: Dict[str, torch.Generator] = {}
        self._params: Dict[str, Tensor] = {}

    def extra_repr(self) -> str:
        return (f"p={self.p}, scale={self.scale}, ratio={self.ratio}, same_on_batch={self.same_on_batch}, "
                f"ratio_sampling={self.ratio_sampling!r}, placement={self.placement!r}")

    @classmethod
    def stacked(cls, **kwargs: object) -> "StackedModalityAugment":
        """The same transform on one stacked ``(2B, C, H, W)`` tensor (visible first), as a kornia
        augmentation for ``kornia.augmentation.AugmentationSequential``."""
        return StackedModalityAugment(**kwargs)  # type: ignore[arg-type]

    def generator_for(self, device: torch.device) -> Optional[torch.Generator]:
        """The generator used on ``device`` (None: torch's global RNG)."""
        g = self._generator_arg
        if g is None:
            return None
        if isinstance(g, torch.Generator):
            if g.device.type != device.type:
                raise ValueError(f"the generator lives on {g.device} but the input is on {device}")
            return g
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(g)
        return self._generators[key]

    def forward_parameters(self, visible: Tensor, thermal: Tensor, visible_labels: Optional[Tensor] = None,
                           thermal_labels: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """Draw the parameters of one call on the inputs' device (nothing is applied)."""
        if (visible_labels is None) != (thermal_labels is None):
            raise ValueError("give both visible_labels and thermal_labels, or neither")
        labelled = visible_labels is not None
        _check_images(visible, thermal, same_batch=not labelled)
        height, width = visible.shape[-2:]
        g = self.generator_for(visible.device)
        params = self._sample(visible.shape[0], height, width, visible.device, g, self.same_on_batch)
        if not labelled:
            return params
        assert visible_labels is not None and thermal_labels is not None
        for name, lab, n in (("visible_labels", visible_labels, visible.shape[0]),
                             ("thermal_labels", thermal_labels, thermal.shape[0])):
            check_tensor(lab, name, 1)
            if lab.shape[0] != n:
                raise ValueError(f"{name} must have one label per image ({n}), got {lab.shape[0]}")
        check_same_device(visible=visible, visible_labels=visible_labels, thermal_labels=thermal_labels)
        vp, tp = match_partners(visible_labels, thermal_labels, generator=g)
        own = self._sample(thermal.shape[0], height, width, visible.device, g, self.same_on_batch)
        # a thermal image in a mutual pair reuses its partner's draw: the same box both ways
        src = tp.clamp(min=0)
        mutual = (tp >= 0) & (vp.index_select(0, src) == torch.arange(tp.shape[0], device=tp.device)) \
            if visible.shape[0] else torch.zeros_like(tp, dtype=torch.bool)
        if visible.shape[0]:
            params["thermal_boxes"] = torch.where(mutual.unsqueeze(1), params["boxes"].index_select(0, src), own["boxes"])
            params["thermal_batch_prob"] = torch.where(mutual, params["batch_prob"].index_select(0, src), own["batch_prob"])
        else:
            params["thermal_boxes"], params["thermal_batch_prob"] = own["boxes"], own["batch_prob"]
        params["visible_partner"], params["thermal_partner"] = vp, tp
        return params

    def forward(
        self,
        visible: Tensor,
        thermal: Tensor,
        visible_labels: Optional[Tensor] = None,
        thermal_labels: Optional[Tensor] = None,
        params: Optional[Dict[str, Tensor]] = None,
    ) -> Tuple[Tensor, Tensor]:
        if params is None:
            params = self.forward_parameters(visible, thermal, visible_labels, thermal_labels)
        elif "boxes" not in params or "batch_prob" not in params:
            raise ValueError("params must come from ModalityAugment (keys 'boxes' and 'batch_prob')")
        self._params = params
        if "visible_partner" in params:
            return modality_exchange(
                visible, thermal, params["boxes"], params["batch_prob"],
                thermal_boxes=params["thermal_boxes"], thermal_apply=params["thermal_batch_prob"],
                visible_partner=params["visible_partner"], thermal_partner=params["thermal_partner"],
            )
        return modality_exchange(visible, thermal, params["boxes"], params["batch_prob"])


class StackedModalityAugment(IntensityAugmentationBase2D, _ExchangeOptions):
    """MAG on one stacked tensor ``(2B, C, H, W)``: rows ``0..B-1`` visible, ``B..2B-1`` thermal,
    aligned by index. A kornia augmentation: it follows kornia's ``p`` / ``same_on_batch`` /
    ``_params`` conventions and sits in ``kornia.augmentation.AugmentationSequential``.

    ``batch_prob`` in ``_params`` has 2B entries (the pair's flag, repeated for both halves), so
    kornia's per-row blend agrees with the per-pair decision. Inside ``AugmentationSequential``
    kornia calls ``forward_parameters(batch_shape)`` first, so draws happen on the module's device
    (``.to(device)``, kornia's convention); called directly, draws happen on the input's device.
    Float inputs (kornia's image convention); use :class:`ModalityAugment` for uint8.

    Example:
        >>> import kornia.augmentation as K
        >>> seq = K.AugmentationSequential(StackedModalityAugment(p=1.0), K.RandomHorizontalFlip(p=0.0))
        >>> x = torch.rand(8, 3, 64, 32)
        >>> y = seq(x)
        >>> bool(torch.equal(y, seq(x, params=seq._params))), tuple(y.shape)
        (True, (8, 3, 64, 32))
    """

    def __init__(
        self,
        p: float = 0.5,
        scale: Tuple[float, float] = (0.02, 0.4),
        ratio: Tuple[float, float] = (0.3, 3.3),
        same_on_batch: bool = False,
        ratio_sampling: RatioSampling = "uniform",
        placement: Placement = "clip",
        keepdim: bool = False,
    ) -> None:
        super().__init__(p=p, same_on_batch=same_on_batch, keepdim=keepdim)
        self._set_options(p, scale, ratio, ratio_sampling, placement)

    def _pair_params(self, batch_shape: Tuple[int, ...], device: torch.device) -> Dict[str, Tensor]:
        n = batch_shape[0]
        if n % 2:
            raise ValueError(f"the stacked batch must hold 2B images (visible, then thermal), got {n}")
        params = self._sample(n // 2, batch_shape[-2], batch_shape[-1], device, None, self.same_on_batch)
        params["batch_prob"] = torch.cat([params["batch_prob"], params["batch_prob"]]).to(self.dtype)
        params["forward_input_shape"] = torch.tensor(batch_shape, dtype=torch.long)
        return params

    def forward_parameters(self, batch_shape: Tuple[int, ...]) -> Dict[str, Tensor]:
        return self._pair_params(tuple(batch_shape), self.device)

    def forward(self, input: Tensor, params: Optional[Dict[str, Tensor]] = None, **kwargs: object) -> Tensor:
        if params is None and isinstance(input, Tensor) and input.dim() == 4:
            params = self._pair_params(tuple(input.shape), input.device)
        return super().forward(input, params=params, **kwargs)  # type: ignore[arg-type]

    def apply_transform(
        self,
        input: Tensor,
        params: Dict[str, Tensor],
        flags: Dict[str, object],
        transform: Optional[Tensor] = None,
    ) -> Tensor:
        n = params["boxes"].shape[0]
        boxes = params["boxes"].to(input.device)
        apply = params["batch_prob"][:n].to(input.device) > 0.5
        if input.shape[0] != 2 * n:
            # kornia < 0.9 calls apply_transform with only the rows whose flag is set (when some,
            # not all, are): the applied pairs' visible rows, then their thermal rows, in order.
            # Select the same pairs' boxes (boolean indexing: a host sync, as kornia's own there).
            boxes = boxes[apply]
            if input.shape[0] != 2 * boxes.shape[0]:
                raise ValueError(
                    f"stacked input of {input.shape[0]} images does not match params for {n} pairs "
                    f"({boxes.shape[0]} applied)"
                )
            apply = torch.ones(boxes.shape[0], dtype=torch.bool, device=input.device)
        k = boxes.shape[0]
        v, t = modality_exchange(input[:k], input[k:], boxes, apply)
        return torch.cat([v, t], dim=0)
