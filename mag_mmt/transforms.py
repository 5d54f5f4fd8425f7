"""The standard VI-ReID training augmentations, batched on the device, composed with MAG.

AGW (``mangye16/Cross-Modal-Re-ID-baseline``, ``train.py``) and CAJ (``ICCV21_CAJ/
data_loader.py``, ``ChannelAug.py``) transform one PIL image at a time in DataLoader workers.
This module draws the same random parameters for a whole ``(B, C, H, W)`` batch on its device
and applies them with gathers and ``torch.where``: no per-sample Python loop, no host sync
(no ``.item()``, ``.tolist()`` or boolean-mask indexing), so it runs on the GPU next to the
model. Layout as :mod:`mag_mmt.augment` (kornia style): ``sample_*`` draws parameters (a dict
of tensors, replayable), the matching function applies them.

================================  ======================================  ===================
per-image transform (source)      law of the parameters, per image        batched here
================================  ======================================  ===================
``Pad(10)`` + ``RandomCrop``      zero padding; top, left uniform over    :func:`crop_flip`
(torchvision; AGW, CAJ)           ``{0..Hp-h}``, ``{0..Wp-w}``
``RandomHorizontalFlip()``        flipped with probability 0.5            :func:`crop_flip`
``ColorJitter`` (torchvision;     factors uniform; *fixed* order b, c,    :func:`color_jitter`
not used by AGW or CAJ)           s, h here (torchvision shuffles it)
``ToTensor`` + ``Normalize``      ``x / 255``, ImageNet mean and std      :func:`normalize`
``ChannelRandomErasing`` (CAJ)    see :func:`sample_erasing_params`       :func:`random_erase`
``ChannelExchange(gray=2)`` (CAJ) channel ``randint(0, gray)``, >2: gray  :func:`channel_mix`
``ChannelAdapGray(0.5)`` (CAJ)    ``randint(0, 3)``; 3: gray w.p. ``p``   :func:`channel_mix`
================================  ======================================  ===================

:class:`ReIDTransform` chains them for one modality in the repos' order (crop/flip, jitter,
normalise, erase, channel) and :class:`CrossModalAugment` runs one transform per view with
:class:`~mag_mmt.augment.ModalityAugment` (MAG) between the geometric and the intensity part
(after crop/flip/jitter, before normalisation), all parameters from one seeded generator.

Preset views (``ReIDTransform.agw()``, ``.caj_visible()``, ``.caj_visible_exchange()``,
``.caj_thermal()``) give the repos' exact per-view settings.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from mag_mmt._validation import check_tensor
from mag_mmt.augment import ModalityAugment
from mag_mmt.errors import UserError
from mag_mmt.functional.exchange import exchange_mask, sample_exchange_params

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CAJ_ERASE_VALUE",
    "GRAY_WEIGHTS",
    "sample_crop_flip_params",
    "crop_flip",
    "sample_jitter_params",
    "color_jitter",
    "normalize",
    "sample_erasing_params",
    "random_erase",
    "sample_channel_params",
    "channel_mix",
    "ReIDTransform",
    "CrossModalAugment",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: CAJ's ``ChannelRandomErasing`` default fill (written onto the *normalised* tensor, as there)
CAJ_ERASE_VALUE = (0.4914, 0.4822, 0.4465)
#: the grayscale weights of CAJ's ``ChannelExchange`` / ``ChannelAdapGray`` (and torchvision)
GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)
#: channel codes of :func:`channel_mix`
REPLICATE_R, REPLICATE_G, REPLICATE_B, GRAY, KEEP = 0, 1, 2, 3, 4

Device = Optional[Union[torch.device, str]]
Params = Dict[str, Tensor]


def _device(device: Device, generator: Optional[torch.Generator]) -> Device:
    return generator.device if device is None and generator is not None else device


def _check_prob(p: float, name: str) -> float:
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise UserError(f"{name} must lie in [0, 1], got {p}")
    return p


def _check_batch(x: object, name: str = "images") -> Tensor:
    x = check_tensor(x, name, 4)
    if not (x.is_floating_point() or x.dtype == torch.uint8):
        raise UserError(f"{name} must be a float or uint8 (B, C, H, W) batch, got dtype {x.dtype}")
    return x


def _uniform_index(u: Tensor, n: Union[int, Tensor]) -> Tensor:
    """``floor(u * n)`` for ``u`` in [0, 1): uniform over ``{0, ..., n - 1}`` (int64)."""
    index = torch.floor(u * n).long()
    return index.clamp(max=n - 1) if isinstance(n, int) else torch.minimum(index, n - 1)


def _to_float(x: Tensor) -> Tensor:
    """ToTensor's scaling: uint8 -> float32 / 255; float inputs are taken as [0, 1] already."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


# --------------------------------------------------------------------------------------------
# pad + random crop + horizontal flip
# --------------------------------------------------------------------------------------------
def sample_crop_flip_params(
    batch_size: int,
    height: int,
    width: int,
    size: Tuple[int, int],
    *,
    padding: int = 10,
    flip_p: float = 0.5,
    device: Device = None,
    generator: Optional[torch.Generator] = None,
) -> Params:
    """Draw the crop offsets and flip flags of ``Pad(padding)`` -> ``RandomCrop(size)`` ->
    ``RandomHorizontalFlip(flip_p)`` for ``batch_size`` images of ``height x width``.

    Law (torchvision's ``RandomCrop.get_params``): with ``Hp = height + 2 * padding``,
    ``top ~ U{0, ..., Hp - size[0]}`` and ``left ~ U{0, ..., Wp - size[1]}`` independently;
    flipped with probability ``flip_p``. One ``torch.rand((B, 3))`` call.

    Returns ``offset`` (B, 2) int64 ``(top, left)`` in the padded image and ``flip`` (B,) bool.

    Example:
        >>> prm = sample_crop_flip_params(4, 288, 144, (288, 144), generator=torch.Generator().manual_seed(0))
        >>> prm["offset"].shape, bool(((prm["offset"] >= 0) & (prm["offset"] <= 20)).all())
        (torch.Size([4, 2]), True)
    """
    flip_p = _check_prob(flip_p, "flip_p")
    th, tw = int(size[0]), int(size[1])
    hp, wp = height + 2 * padding, width + 2 * padding
    if padding < 0 or th < 1 or tw < 1 or hp < th or wp < tw:
        raise UserError(
            f"cannot crop {th}x{tw} from a {height}x{width} image padded by {padding} "
            f"({hp}x{wp}); resize the images first or lower the crop size"
        )
    u = torch.rand((batch_size, 3), device=_device(device, generator), generator=generator)
    top = _uniform_index(u[:, 0], hp - th + 1)
    left = _uniform_index(u[:, 1], wp - tw + 1)
    return {"offset": torch.stack([top, left], dim=1), "flip": u[:, 2] < flip_p}


def crop_flip(x: Tensor, offset: Tensor, flip: Tensor, size: Tuple[int, int], padding: int = 10,
              fill: float = 0.0) -> Tensor:
    """Crop ``size`` at ``offset`` from ``x`` padded by ``padding`` (constant ``fill``), then
    mirror the rows whose ``flip`` is True. No per-sample loop.

    ``out[b, :, i, j] = padded[b, :, top + i, left + j]`` (``left + size[1] - 1 - j`` if
    flipped), i.e. torchvision's ``pad`` -> ``crop`` -> ``hflip`` on each image. The batch is
    stacked with its mirror image and every output row is one contiguous window of that
    stack, taken with a single ``index_select`` (row copies; an element-wise ``gather`` is
    about 50x slower on CPU).

    Args:
        x: (B, C, H, W) float or uint8.
        offset: (B, 2) int64 ``(top, left)`` in padded coordinates; ``flip``: (B,) bool.

    Returns:
        (B, C, size[0], size[1]) in ``x``'s dtype.

    Example:
        >>> x = torch.arange(16.).view(1, 1, 4, 4)
        >>> crop_flip(x, torch.tensor([[1, 1]]), torch.tensor([True]), (2, 3), padding=1)[0, 0]
        tensor([[2., 1., 0.],
                [6., 5., 4.]])
    """
    x = _check_batch(x, "x")
    b, c, h, w = x.shape
    th, tw = int(size[0]), int(size[1])
    if offset.shape != (b, 2) or flip.shape != (b,):
        raise UserError(f"offset must be ({b}, 2) and flip ({b},), got {tuple(offset.shape)} and {tuple(flip.shape)}")
    padded = torch.nn.functional.pad(x, (padding,) * 4, value=fill) if padding else x
    hp, wp = padded.shape[-2:]
    flat = torch.cat([padded, padded.flip(-1)]).reshape(-1)
    windows = flat.as_strided((flat.numel() - tw + 1, tw), (1, 1))  # windows[k] = flat[k : k + tw]
    flip = flip.long()
    # a flipped crop at `left` is the mirror image's crop at `wp - left - tw`
    left = torch.where(flip > 0, wp - tw - offset[:, 1], offset[:, 1])
    image = torch.arange(b, device=x.device) + b * flip
    rows = offset[:, 0:1] + torch.arange(th, device=x.device)
    start = ((image.view(b, 1, 1) * c + torch.arange(c, device=x.device).view(1, c, 1)) * hp + rows.view(b, 1, th)) * wp
    start = start + left.view(b, 1, 1)
    return windows.index_select(0, start.reshape(-1)).view(b, c, th, tw)


# --------------------------------------------------------------------------------------------
# colour jitter (optional; AGW and CAJ do not use it)
# --------------------------------------------------------------------------------------------
_JITTER_KEYS = ("brightness", "contrast", "saturation", "hue")


def _jitter_range(value: Union[float, Tuple[float, float]], name: str) -> Tuple[float, float]:
    if isinstance(value, (int, float)):
        v = float(value)
        if v < 0 or (name == "hue" and v > 0.5):
            raise UserError(f"{name} must be >= 0{' and <= 0.5' if name == 'hue' else ''}, got {value}")
        return (-v, v) if name == "hue" else (max(0.0, 1.0 - v), 1.0 + v)
    lo, hi = (float(t) for t in value)
    bounds = (-0.5, 0.5) if name == "hue" else (0.0, math.inf)
    if not bounds[0] <= lo <= hi <= bounds[1]:
        raise UserError(f"{name} range must satisfy {bounds[0]} <= low <= high <= {bounds[1]}, got {value!r}")
    return lo, hi


def sample_jitter_params(
    batch_size: int,
    brightness: Union[float, Tuple[float, float]] = 0.0,
    contrast: Union[float, Tuple[float, float]] = 0.0,
    saturation: Union[float, Tuple[float, float]] = 0.0,
    hue: Union[float, Tuple[float, float]] = 0.0,
    *,
    device: Device = None,
    generator: Optional[torch.Generator] = None,
) -> Params:
    """Per-image colour-jitter factors, torchvision's ``ColorJitter`` law: a number ``v`` means
    ``U[max(0, 1 - v), 1 + v]`` (hue: ``U[-v, v]``, ``v <= 0.5``); a pair is the range itself.

    Returns (B,) float32 tensors ``brightness``, ``contrast``, ``saturation``, ``hue`` (a factor
    of 1, or a hue shift of 0, leaves the image unchanged).

    Example:
        >>> prm = sample_jitter_params(3, brightness=0.2, hue=0.1, generator=torch.Generator().manual_seed(0))
        >>> sorted(prm), bool((prm["contrast"] == 1).all())
        (['brightness', 'contrast', 'hue', 'saturation'], True)
    """
    ranges = [_jitter_range(v, k) for k, v in zip(_JITTER_KEYS, (brightness, contrast, saturation, hue))]
    u = torch.rand((batch_size, 4), device=_device(device, generator), generator=generator)
    return {k: lo + (hi - lo) * u[:, i] for i, (k, (lo, hi)) in enumerate(zip(_JITTER_KEYS, ranges))}


def _gray(x: Tensor) -> Tensor:
    """(B, 1, H, W) luma with :data:`GRAY_WEIGHTS`, computed as CAJ does (float)."""
    r, g, b = GRAY_WEIGHTS
    return r * x[:, 0:1] + g * x[:, 1:2] + b * x[:, 2:3]


def color_jitter(x: Tensor, params: Params) -> Tensor:
    """Apply brightness, contrast, saturation, hue (in that order) per image, as torchvision's
    functional ``adjust_*`` do: ``clamp(f * x, 0, 1)``; blend with the image's mean luma;
    blend with the luma; rotate the HSV hue by ``hue`` turns.

    Args:
        x: (B, 3, H, W) float in [0, 1] (uint8 is scaled by 1/255 first).
        params: from :func:`sample_jitter_params`.

    Returns:
        (B, 3, H, W) float.

    Example:
        >>> x = torch.rand(2, 3, 8, 4)
        >>> prm = sample_jitter_params(2)                     # all factors neutral
        >>> torch.allclose(color_jitter(x, prm), x, atol=1e-5)
        True
    """
    x = _check_batch(x, "x")
    if x.shape[1] != 3:
        raise UserError(f"colour jitter needs RGB images (B, 3, H, W), got {tuple(x.shape)}")
    x = _to_float(x)
    f = {k: params[k].to(x.dtype).view(-1, 1, 1, 1) for k in _JITTER_KEYS}
    x = (x * f["brightness"]).clamp(0.0, 1.0)
    mean = _gray(x).mean(dim=(-3, -2, -1), keepdim=True)
    x = (f["contrast"] * x + (1.0 - f["contrast"]) * mean).clamp(0.0, 1.0)
    x = (f["saturation"] * x + (1.0 - f["saturation"]) * _gray(x)).clamp(0.0, 1.0)
    from kornia.color import hsv_to_rgb, rgb_to_hsv

    hsv = rgb_to_hsv(x)
    hue = torch.remainder(hsv[:, 0:1] + f["hue"] * (2.0 * math.pi), 2.0 * math.pi)
    return hsv_to_rgb(torch.cat([hue, hsv[:, 1:]], dim=1)).clamp(0.0, 1.0)


# --------------------------------------------------------------------------------------------
# ToTensor + Normalize
# --------------------------------------------------------------------------------------------
def normalize(x: Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> Tensor:
    """``ToTensor`` then ``Normalize``: uint8 is scaled to [0, 1], then ``(x - mean) / std``
    per channel (one channel: the first mean and std).

    Example:
        >>> normalize(torch.full((1, 3, 1, 1), 255, dtype=torch.uint8)).flatten()
        tensor([2.2489, 2.4286, 2.6400])
    """
    x = _check_batch(x, "x")
    c = x.shape[1]
    m = torch.tensor(mean[:c] if c == len(mean) else mean[:1], dtype=torch.float64).view(1, -1, 1, 1)
    s = torch.tensor(std[:c] if c == len(std) else std[:1], dtype=torch.float64).view(1, -1, 1, 1)
    dtype = x.dtype if x.is_floating_point() else torch.float32
    # one multiply-add: x * (k / std) - mean / std, k = 1/255 for uint8 (ToTensor)
    scale = (1.0 / 255.0 if x.dtype == torch.uint8 else 1.0) / s
    scale, shift = scale.to(x.device, dtype), (-m / s).to(x.device, dtype)
    return (x.to(dtype) * scale).add_(shift)


# --------------------------------------------------------------------------------------------
# channel-wise random erasing (CAJ's ChannelRandomErasing)
# --------------------------------------------------------------------------------------------
def sample_erasing_params(
    batch_size: int,
    height: int,
    width: int,
    *,
    p: float = 0.5,
    scale: Tuple[float, float] = (0.02, 0.4),
    r1: float = 0.3,
    attempts: int = 100,
    device: Device = None,
    generator: Optional[torch.Generator] = None,
) -> Params:
    """Draw CAJ's ``ChannelRandomErasing(probability=p, sl, sh, r1)`` box per image.

    Law, per image (``S = height * width``; Zhong et al.'s random erasing as CAJ codes it):

    * applied with probability ``p``;
    * up to ``attempts`` (100) tries: ``A ~ U[sl, sh]``, ``r ~ U[r1, 1 / r1]`` (uniform, not
      log-uniform), ``h = round(sqrt(S A r))``, ``w = round(sqrt(S A / r))`` (half to even,
      like Python's ``round``); the first try with ``h < height`` and ``w < width`` (strict)
      is kept; if none fits, nothing is erased;
    * top ``~ U{0..height-h}``, left ``~ U{0..width-w}``.

    All tries are drawn at once (``torch.rand((B, 2 * attempts + 3))``) and the first fitting
    one is found with ``argmax``: same law as the loop, no host sync.

    Returns ``batch_prob`` (B,) bool (applied *and* a try fitted), ``boxes`` (B, 4) int64
    ``(x1, y1, x2, y2)`` half-open (MAG's convention), ``size`` (B, 2) int64 ``(h, w)``.

    Example:
        >>> prm = sample_erasing_params(5, 288, 144, p=1.0, generator=torch.Generator().manual_seed(0))
        >>> bool(prm["batch_prob"].all()), bool((prm["boxes"][:, 2] <= 144).all())
        (True, True)
    """
    p = _check_prob(p, "erase p")
    sl, sh = (float(s) for s in scale)
    if not 0.0 <= sl <= sh or not 0.0 < float(r1) <= 1.0 or attempts < 1:
        raise UserError(f"need 0 <= sl <= sh, 0 < r1 <= 1 and attempts >= 1, got scale={scale}, r1={r1}, attempts={attempts}")
    r1 = float(r1)
    u = torch.rand((batch_size, 2 * attempts + 3), device=_device(device, generator), generator=generator)
    target = (sl + (sh - sl) * u[:, 1 : attempts + 1]) * float(height * width)
    ratio = r1 + (1.0 / r1 - r1) * u[:, attempts + 1 : 2 * attempts + 1]
    h_try = torch.round(torch.sqrt(target * ratio)).long()
    w_try = torch.round(torch.sqrt(target / ratio)).long()
    fits = (h_try < height) & (w_try < width)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # the first fitting try (0 if none)
    h = h_try.gather(1, first).squeeze(1)
    w = w_try.gather(1, first).squeeze(1)
    found = fits.any(dim=1)
    h, w = torch.where(found, h, 0), torch.where(found, w, 0)
    top = _uniform_index(u[:, -2], height - h + 1)
    left = _uniform_index(u[:, -1], width - w + 1)
    return {
        "batch_prob": (u[:, 0] < p) & found,
        "boxes": torch.stack([left, top, left + w, top + h], dim=1),
        "size": torch.stack([h, w], dim=1),
    }


def random_erase(x: Tensor, boxes: Tensor, apply: Tensor, value: Sequence[float] = CAJ_ERASE_VALUE) -> Tensor:
    """Fill each applied box with ``value``: channel ``c`` gets ``value[c]`` for 3-channel
    images; otherwise only channel 0 is filled, with ``value[0]`` (CAJ's rule). Pixels outside
    the boxes are returned unchanged (one ``torch.where``).

    Args:
        x: (B, C, H, W); boxes (B, 4) int64 ``(x1, y1, x2, y2)``; apply (B,) bool.

    Example:
        >>> out = random_erase(torch.zeros(1, 3, 3, 3), torch.tensor([[0, 0, 2, 1]]), torch.tensor([True]), (1., 2., 3.))
        >>> out[0, :, 0].tolist()
        [[1.0, 1.0, 0.0], [2.0, 2.0, 0.0], [3.0, 3.0, 0.0]]
    """
    x = _check_batch(x, "x")
    b, c, h, w = x.shape
    mask = exchange_mask(boxes, h, w, apply)
    if c == 3:
        fill = torch.tensor([float(v) for v in value[:3]], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    else:
        fill = torch.tensor(float(value[0]), dtype=x.dtype, device=x.device)
        mask = mask & (torch.arange(c, device=x.device) == 0).view(1, c, 1, 1)
    return torch.where(mask, fill, x)


# --------------------------------------------------------------------------------------------
# CAJ's channel exchange and adaptive grayscale
# --------------------------------------------------------------------------------------------
def sample_channel_params(
    batch_size: int,
    mode: str = "exchange",
    *,
    gray: int = 2,
    p: float = 0.5,
    device: Device = None,
    generator: Optional[torch.Generator] = None,
) -> Params:
    """Draw CAJ's channel operation per image, as a code: 0/1/2 replicate R/G/B into all
    three channels, 3 grayscale, 4 unchanged.

    * ``mode="exchange"`` (``ChannelExchange(gray)``, data_loader.py): ``idx ~ U{0..gray}``;
      ``idx <= 2`` replicates that channel, larger ``idx`` grays. CAJ uses ``gray=2``: R, G, B
      with 1/3 each, never gray.
    * ``mode="adaptive_gray"`` (``ChannelAdapGray(probability=p)``, ChannelAug.py):
      ``idx ~ U{0..3}``; ``idx <= 2`` replicates; ``idx = 3`` grays with probability ``p``,
      else unchanged. CAJ uses ``p=0.5``: R, G, B 1/4 each, gray 1/8, unchanged 1/8.
      ``p=0`` is CAJ's ``ChannelAdap``.

    Returns ``code`` (B,) int64. One ``torch.rand((B, 2))`` call.

    Example:
        >>> sample_channel_params(6, "exchange", generator=torch.Generator().manual_seed(0))["code"].max() <= 2
        tensor(True)
    """
    if mode not in ("exchange", "adaptive_gray"):
        raise UserError(f"channel mode must be 'exchange' or 'adaptive_gray', got {mode!r}")
    p = _check_prob(p, "channel p")
    if int(gray) < 0:
        raise UserError(f"gray must be >= 0, got {gray}")
    u = torch.rand((batch_size, 2), device=_device(device, generator), generator=generator)
    if mode == "exchange":
        code = _uniform_index(u[:, 0], int(gray) + 1).clamp(max=GRAY)
    else:
        idx = _uniform_index(u[:, 0], 4)
        code = torch.where(idx < GRAY, idx, torch.where(u[:, 1] < p, GRAY, KEEP))
    return {"code": code}


def channel_mix(x: Tensor, code: Tensor) -> Tensor:
    """Apply :func:`sample_channel_params` codes to (B, 3, H, W) images: replicate one channel
    (exact copies for finite inputs), gray ``0.2989 R + 0.5870 G + 0.1140 B`` in all three, or
    keep. One batched 3x3 matrix product per image (``torch.bmm``); uint8 images are mixed in
    float32 and rounded back.

    Example:
        >>> x = torch.arange(3.).view(1, 3, 1, 1).repeat(3, 1, 1, 1)
        >>> [round(v, 4) for v in channel_mix(x, torch.tensor([2, 3, 4])).flatten().tolist()]
        [2.0, 2.0, 2.0, 0.815, 0.815, 0.815, 0.0, 1.0, 2.0]
    """
    x = _check_batch(x, "x")
    b, c, h, w = x.shape
    if c != 3:
        raise UserError(f"channel exchange / adaptive gray needs 3-channel images, got {tuple(x.shape)}")
    if code.shape != (b,):
        raise UserError(f"code must have shape ({b},), got {tuple(code.shape)}")
    dtype = x.dtype if x.is_floating_point() else torch.float32
    eye = torch.eye(3, dtype=dtype, device=x.device)
    mats = torch.cat([eye.unsqueeze(1).expand(3, 3, 3),                      # replicate R, G, B
                      torch.tensor(GRAY_WEIGHTS, dtype=dtype, device=x.device).expand(1, 3, 3),
                      eye.unsqueeze(0)])                                      # (5, 3, 3) by code
    out = torch.bmm(mats.index_select(0, code), x.to(dtype).reshape(b, 3, h * w)).view(b, 3, h, w)
    return out if x.is_floating_point() else out.round_().clamp_(0, 255).to(x.dtype)


# --------------------------------------------------------------------------------------------
# pipelines
# --------------------------------------------------------------------------------------------
class _Seeded:
    """One generator per device from an int seed, or a given torch.Generator (MAG's rule)."""

    def _set_generator(self, generator: Optional[Union[int, torch.Generator]]) -> None:
        if generator is not None and (isinstance(generator, bool) or not isinstance(generator, (int, torch.Generator))):
            raise UserError(f"generator must be an int seed or a torch.Generator, got {type(generator).__name__}")
        self._generator_arg = generator
        self._generators: Dict[str, torch.Generator] = {}

    def generator_for(self, device: torch.device) -> Optional[torch.Generator]:
        """The generator used on ``device`` (None: torch's global RNG)."""
        g = self._generator_arg
        if g is None or isinstance(g, torch.Generator):
            if g is not None and g.device.type != device.type:
                raise UserError(f"the generator lives on {g.device} but the input is on {device}")
            return g
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(g)
        return self._generators[key]


class ReIDTransform(nn.Module, _Seeded):
    """One view's training transform, batched: crop/flip -> jitter -> normalise -> erase -> channel.

    Args:
        size: crop size ``(h, w)`` (AGW/CAJ: 288 x 144); inputs must all share one size and,
            padded, be at least this large (the repos pre-resize to 288 x 144).
        padding, fill: ``Pad(padding, fill)`` (AGW/CAJ: 10, 0). ``padding=0`` with
            ``size`` = the input size and ``flip_p=0`` skips the geometric part.
        flip_p: horizontal flip probability (0.5).
        jitter: None or a dict of ``brightness``/``contrast``/``saturation``/``hue`` for
            :func:`sample_jitter_params` (RGB only; not in AGW or CAJ).
        mean, std: ``Normalize`` (ImageNet); ``normalize=False`` returns [0, 1] floats.
        erase_p: ``ChannelRandomErasing`` probability (0 = off; CAJ: 0.5 on every view);
            ``erase_scale`` (sl, sh), ``erase_r1``, ``erase_value`` (CAJ's values on the
            normalised tensor), ``erase_attempts`` (100).
        channel: None, ``"exchange"`` (``ChannelExchange(gray=channel_gray)``) or
            ``"adaptive_gray"`` (``ChannelAdapGray(probability=channel_p)``).
        generator: int seed or ``torch.Generator``; None uses torch's global RNG.

    Call ``t(x, params=None)`` with ``x`` (B, C, H, W) uint8 in [0, 255] or float in [0, 1];
    returns (B, C, size[0], size[1]) float (uint8 if ``normalize=False`` and nothing converts
    it). ``t._params`` holds the last call's parameters; ``t(x, params=t._params)`` replays it.
    :meth:`pre` (crop/flip/jitter) and :meth:`post` (the rest) split the call around MAG.

    Example:
        >>> t = ReIDTransform.caj_visible_exchange(generator=0)
        >>> x = torch.randint(0, 256, (4, 3, 288, 144), dtype=torch.uint8)
        >>> y = t(x)
        >>> bool(torch.equal(y, t(x, params=t._params))), tuple(y.shape), y.dtype
        (True, (4, 3, 288, 144), torch.float32)
    """

    def __init__(
        self,
        size: Tuple[int, int] = (288, 144),
        *,
        padding: int = 10,
        fill: float = 0.0,
        flip_p: float = 0.5,
        jitter: Optional[Dict[str, Union[float, Tuple[float, float]]]] = None,
        normalize: bool = True,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        erase_p: float = 0.0,
        erase_scale: Tuple[float, float] = (0.02, 0.4),
        erase_r1: float = 0.3,
        erase_value: Sequence[float] = CAJ_ERASE_VALUE,
        erase_attempts: int = 100,
        channel: Optional[str] = None,
        channel_gray: int = 2,
        channel_p: float = 0.5,
        generator: Optional[Union[int, torch.Generator]] = None,
    ) -> None:
        super().__init__()
        self.size = (int(size[0]), int(size[1]))
        self.padding, self.fill = int(padding), float(fill)
        if self.padding < 0:
            raise UserError(f"padding must be >= 0, got {padding}")
        self.flip_p = _check_prob(flip_p, "flip_p")
        if jitter is not None:
            unknown = set(jitter) - set(_JITTER_KEYS)
            if unknown:
                raise UserError(f"unknown jitter keys {sorted(unknown)}; use {list(_JITTER_KEYS)}")
            for k, v in jitter.items():
                _jitter_range(v, k)
        self.jitter = dict(jitter) if jitter else None
        self.do_normalize, self.mean, self.std = bool(normalize), tuple(mean), tuple(std)
        self.erase_p = _check_prob(erase_p, "erase_p")
        self.erase_scale, self.erase_r1 = tuple(erase_scale), float(erase_r1)
        self.erase_value, self.erase_attempts = tuple(erase_value), int(erase_attempts)
        if channel not in (None, "exchange", "adaptive_gray"):
            raise UserError(f"channel must be None, 'exchange' or 'adaptive_gray', got {channel!r}")
        self.channel, self.channel_gray, self.channel_p = channel, int(channel_gray), _check_prob(channel_p, "channel_p")
        self._set_generator(generator)
        self._params: Dict[str, Params] = {}

    # presets: the repos' per-view settings --------------------------------------------------
    @classmethod
    def agw(cls, **kwargs: object) -> "ReIDTransform":
        """AGW ``train.py``: Pad(10), RandomCrop(288, 144), flip 0.5, ToTensor, Normalize."""
        return cls(**kwargs)  # type: ignore[arg-type]

    @classmethod
    def caj_visible(cls, **kwargs: object) -> "ReIDTransform":
        """CAJ ``transform_color``: AGW's, then ChannelRandomErasing(0.5)."""
        return cls(**{"erase_p": 0.5, **kwargs})  # type: ignore[arg-type]

    @classmethod
    def caj_visible_exchange(cls, **kwargs: object) -> "ReIDTransform":
        """CAJ ``transform_color1``: AGW's, ChannelRandomErasing(0.5), ChannelExchange(gray=2)."""
        return cls(**{"erase_p": 0.5, "channel": "exchange", "channel_gray": 2, **kwargs})  # type: ignore[arg-type]

    @classmethod
    def caj_thermal(cls, **kwargs: object) -> "ReIDTransform":
        """CAJ ``transform_thermal``: AGW's, ChannelRandomErasing(0.5), ChannelAdapGray(0.5)."""
        return cls(**{"erase_p": 0.5, "channel": "adaptive_gray", "channel_p": 0.5, **kwargs})  # type: ignore[arg-type]

    def extra_repr(self) -> str:
        return (f"size={self.size}, padding={self.padding}, flip_p={self.flip_p}, jitter={self.jitter}, "
                f"normalize={self.do_normalize}, erase_p={self.erase_p}, channel={self.channel!r}")

    # parameters ---------------------------------------------------------------------------
    def forward_parameters(self, shape: Sequence[int], device: torch.device,
                           generator: Optional[torch.Generator] = None) -> Dict[str, Params]:
        """Draw every parameter of one call for inputs of ``shape`` (B, C, H, W) on ``device``
        (``generator`` defaults to this transform's own). Fixed draw order: crop/flip, jitter,
        erasing, channel."""
        b, c, h, w = (int(s) for s in shape)
        g = generator if generator is not None else self.generator_for(torch.device(device))
        if (self.jitter or self.channel) and c != 3:
            raise UserError(f"colour jitter and channel operations need 3-channel images, got {c} channels")
        out = {"crop_flip": sample_crop_flip_params(b, h, w, self.size, padding=self.padding, flip_p=self.flip_p,
                                                    device=device, generator=g)}
        if self.jitter:
            out["jitter"] = sample_jitter_params(b, **self.jitter, device=device, generator=g)  # type: ignore[arg-type]
        if self.erase_p > 0:
            out["erase"] = sample_erasing_params(b, *self.size, p=self.erase_p, scale=self.erase_scale,  # type: ignore[arg-type]
                                                 r1=self.erase_r1, attempts=self.erase_attempts, device=device, generator=g)
        if self.channel:
            out["channel"] = sample_channel_params(b, self.channel, gray=self.channel_gray, p=self.channel_p,
                                                   device=device, generator=g)
        return out

    # applying -----------------------------------------------------------------------------
    def pre(self, x: Tensor, params: Dict[str, Params]) -> Tensor:
        """Crop/flip, then colour jitter: the part before MAG (dtype kept unless jittered)."""
        x = _check_batch(x, "images")
        cf = params["crop_flip"]
        x = crop_flip(x, cf["offset"], cf["flip"], self.size, self.padding, self.fill)
        if "jitter" in params:
            x = color_jitter(x, params["jitter"])
        return x

    def post(self, x: Tensor, params: Dict[str, Params]) -> Tensor:
        """Normalise, erase, channel operation: the part after MAG."""
        if self.do_normalize:
            x = normalize(x, self.mean, self.std)
        if "erase" in params:
            x = random_erase(x, params["erase"]["boxes"], params["erase"]["batch_prob"], self.erase_value)
        if "channel" in params:
            x = channel_mix(x, params["channel"]["code"])
        return x

    def forward(self, x: Tensor, params: Optional[Dict[str, Params]] = None) -> Tensor:
        x = _check_batch(x, "images")
        if params is None:
            params = self.forward_parameters(x.shape, x.device)
        self._params = params
        return self.post(self.pre(x, params), params)


class CrossModalAugment(nn.Module, _Seeded):
    """Visible and thermal views of a batch of aligned pairs, with MAG between them.

    Per call: every view's crop/flip/jitter (:meth:`ReIDTransform.pre`); MAG (if given) between
    the *first* visible view and the thermal batch (aligned by index, the AGW/CAJ sampler);
    then every view's normalise/erase/channel (:meth:`ReIDTransform.post`). All parameters come
    from this module's generator in a fixed order (visible views, thermal, MAG), so one seed
    reproduces the call and ``params=aug._params`` replays it.

    Args:
        visible: one :class:`ReIDTransform` or a sequence of them (one output view each; CAJ:
            ``[caj_visible(), caj_visible_exchange()]``).
        thermal: the thermal view's transform (CAJ: ``caj_thermal()``).
        mag: a :class:`~mag_mmt.augment.ModalityAugment` (its options are used, its own
            generator is not) or None.
        generator: int seed or ``torch.Generator``; None uses torch's global RNG.

    Call ``aug(visible, thermal, params=None)`` with (B, C, H, W) uint8 or float batches of one
    size; returns ``(*visible_views, thermal_view)`` float tensors (B, C, h, w).

    Example:
        >>> aug = CrossModalAugment([ReIDTransform.caj_visible(size=(64, 32)),
        ...                          ReIDTransform.caj_visible_exchange(size=(64, 32))],
        ...                         ReIDTransform.caj_thermal(size=(64, 32)), ModalityAugment(p=0.5), generator=0)
        >>> v = torch.randint(0, 256, (4, 3, 64, 32), dtype=torch.uint8)
        >>> out = aug(v, v.flip(1))
        >>> len(out), bool(all(torch.equal(a, b) for a, b in zip(out, aug(v, v.flip(1), params=aug._params))))
        (3, True)
    """

    def __init__(
        self,
        visible: Union[ReIDTransform, Sequence[ReIDTransform]],
        thermal: ReIDTransform,
        mag: Optional[ModalityAugment] = None,
        generator: Optional[Union[int, torch.Generator]] = None,
    ) -> None:
        super().__init__()
        views = [visible] if isinstance(visible, ReIDTransform) else list(visible)
        if not views or not all(isinstance(v, ReIDTransform) for v in [*views, thermal]):
            raise UserError("visible must be a ReIDTransform or a non-empty sequence of them, thermal a ReIDTransform")
        if mag is not None and not isinstance(mag, ModalityAugment):
            raise UserError(f"mag must be a ModalityAugment or None, got {type(mag).__name__}")
        if mag is not None and views[0].size != thermal.size:
            raise UserError(f"MAG needs one crop size for both modalities, got {views[0].size} and {thermal.size}")
        self.visible = nn.ModuleList(views)
        self.thermal = thermal
        self.mag = mag
        self._set_generator(generator)
        self._params: Dict[str, object] = {}

    def forward_parameters(self, visible_shape: Sequence[int], thermal_shape: Sequence[int],
                           device: torch.device) -> Dict[str, object]:
        """Draw every view's and MAG's parameters (nothing is applied)."""
        if visible_shape[0] != thermal_shape[0]:
            raise UserError(f"visible and thermal batches must be aligned pairs, got {visible_shape[0]} and {thermal_shape[0]} images")
        g = self.generator_for(torch.device(device))
        params: Dict[str, object] = {
            "visible": [v.forward_parameters(visible_shape, device, g) for v in self.visible],  # type: ignore[union-attr]
            "thermal": self.thermal.forward_parameters(thermal_shape, device, g),
        }
        if self.mag is not None:
            m = self.mag
            params["mag"] = sample_exchange_params(
                int(visible_shape[0]), *self.thermal.size, p=m.p, scale=m.scale, ratio=m.ratio,
                same_on_batch=m.same_on_batch, ratio_sampling=m.ratio_sampling,  # type: ignore[arg-type]
                placement=m.placement, device=device, generator=g,  # type: ignore[arg-type]
            )
        return params

    def forward(self, visible: Tensor, thermal: Tensor, params: Optional[Dict[str, object]] = None) -> Tuple[Tensor, ...]:
        visible, thermal = _check_batch(visible, "visible"), _check_batch(thermal, "thermal")
        if params is None:
            params = self.forward_parameters(visible.shape, thermal.shape, visible.device)
        self._params = params
        vp, tp = params["visible"], params["thermal"]
        views = [t.pre(visible, p) for t, p in zip(self.visible, vp)]  # type: ignore[call-overload, arg-type]
        th = self.thermal.pre(thermal, tp)  # type: ignore[arg-type]
        if self.mag is not None:
            if views[0].dtype != th.dtype:  # one side jittered to float
                views[0], th = _to_float(views[0]), _to_float(th)
            views[0], th = self.mag(views[0], th, params=params["mag"])
        out = [t.post(x, p) for t, x, p in zip(self.visible, views, vp)]  # type: ignore[call-overload, arg-type]
        return (*out, self.thermal.post(th, tp))  # type: ignore[arg-type]
