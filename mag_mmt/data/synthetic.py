"""Embedded synthetic cross-modality ReID data: procedural, deterministic, no files.

:func:`make_synthetic` returns a :class:`~mag_mmt.data.records.ReIDData` laid out like
SYSU-MM01, so the sampler, the SYSU protocol and the CLI take it like a real dataset:

* cameras 1, 2, 4, 5 visible and 3, 6 thermal; 1-3 "indoor", 4-6 "outdoor" scenes
  (``meta["camera_modality"]``, ``meta["camera_scene"]``);
* identities ``0..num_train_identities-1`` train (labels = ids), the rest test;
  ``query`` = thermal test images, ``gallery`` = the visible gallery pool (or, with
  ``both_directions=True``, every test image in both lists, as RegDB);
* each sample's ``path`` is a key ``"synthetic://<id>/<cam>/<k>"`` and ``data.loader`` (a
  :class:`SyntheticRenderer`) renders it to a ``uint8`` ``(3, H, W)`` tensor, the same pixels
  for the same key and seed on every machine (or serves it from a cache).

What is drawn (all in vectorised torch, per pixel on a body coordinate grid):

* an **identity** has a body shape (height, build, leg length, head size), clothing (upper
  and lower colours, a secondary colour, upper pattern plain / horizontal stripes / checks /
  vertical stripes, optional vertical-stripe trousers, long or short sleeves and trousers),
  skin and hair colours, an optional side bag, and *heat* values per material (skin, hair,
  upper and lower clothing, the pattern's second material, bag);
* a **camera** has its viewpoint (scale, position, front or back view), background (indoor
  wall + floor or outdoor sky + ground, with texture), illumination (gain, colour tint) or,
  if thermal, ambient temperature, gain and blur, and a noise level;
* an **image** adds pose jitter (leg and arm swing, lean, shift, scale), illumination jitter
  and pixel noise.

The visible rendering shows colours; the thermal rendering shows only heat: its intensity
comes from the heat values, which are drawn independently of the colours, plus texture
contrast of the pattern materials. Colour therefore cannot match across modalities (as in
real RGB-IR data), while body shape, pattern layout, sleeves/trousers (skin is hot) and the
bag are shared cues. Thermal images have three equal channels.

The ``"bench"`` style (presets ``"bench"`` and ``"bench-large"``, the embedded benchmark of
``docs/benchmark.md``) draws its identities from its own random streams, so the classic presets
render exactly as before. An identity is a *combination of categorical attributes*
(:data:`BENCH_ATTRIBUTES`: build, leg length, coat length, sleeves, trouser length, torso
pattern, bag, hat) that all show by geometry or texture, hence in both modalities; a test
identity is an unseen combination of values learned on the training identities. What shows in
one modality only carries little identity information: garment colours come from a 10-colour
palette and each image shows a garment in its owner's colour only with probability
``colour_keep`` (else any palette colour); heat is set by the material with a small identity
offset and a per-image jitter; the pattern is lighter or darker than the garment (in colour
and in heat) at random per image. Per-image nuisance: shift, scale, pose, an occasional
occluder (a pole or passer-by), noise. The knobs are :data:`BENCH_STYLE`.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

import torch
import torch.nn.functional as F

from .records import THERMAL, VISIBLE, ReIDData, Sample
from .sysu import SYSU_CAMERA_MODALITY, SYSU_CAMERA_SCENE

SYNTHETIC_PRESETS: dict[str, dict] = {
    # CPU demo: 64 identities (32 train / 32 test), 4 images per camera, 64 x 32 pixels.
    "demo": dict(num_identities=64, num_train_identities=32, images_per_camera=4, size=(64, 32)),
    # GPU scale, SYSU-like counts: 395 train / 96 test identities, 10 images per camera.
    "large": dict(num_identities=491, num_train_identities=395, images_per_camera=10, size=(256, 128)),
    # the embedded benchmark (docs/benchmark.md): the "bench" generator style (identities are
    # combinations of attributes seen in both modalities), 300 train / 64 test identities, 64 x 32.
    "bench": dict(num_identities=364, num_train_identities=300, images_per_camera=4, size=(64, 32),
                  style="bench"),
    # the same at GPU scale: 400 train / 96 test identities, 10 images per camera, 128 x 64.
    "bench-large": dict(num_identities=496, num_train_identities=400, images_per_camera=10, size=(128, 64),
                        style="bench"),
}
STYLES = ("classic", "bench")
CAMERAS = tuple(sorted(SYSU_CAMERA_MODALITY))  # 1..6
_KEY = re.compile(r"synthetic://(\d+)/(\d+)/(\d+)")
_CACHE_LIMIT = 2**28  # bytes: cache the rendering up to 256 MiB by default


def synthetic_key(identity: int, camera: int, index: int) -> str:
    """The ``path`` key of image ``index`` of ``identity`` under ``camera``."""
    return f"synthetic://{identity}/{camera}/{index}"


def parse_synthetic_key(path: str) -> tuple[int, int, int]:
    """``(identity, camera, index)`` of a ``"synthetic://<id>/<cam>/<k>"`` key."""
    match = _KEY.fullmatch(path)
    if match is None:
        raise ValueError(f"not a synthetic image key (synthetic://<id>/<cam>/<k>): {path!r}")
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


# ---------------------------------------------------------------------------------------
# random parameter tables
# ---------------------------------------------------------------------------------------
def _gen(seed: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + stream)


def _u(g: torch.Generator, shape: Sequence[int], lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(tuple(shape), generator=g)


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """HSV in [0, 1] (any shape) -> RGB (..., 3)."""
    k = torch.tensor([5.0, 3.0, 1.0])
    kk = (k + h.unsqueeze(-1) * 6.0) % 6.0
    t = torch.minimum(kk, 4.0 - kk).clamp(0.0, 1.0)
    return v.unsqueeze(-1) * (1.0 - s.unsqueeze(-1) * t)


def _identity_params(n: int, seed: int, style: str = "classic") -> dict[str, torch.Tensor]:
    g = _gen(seed, 1)
    build = _u(g, [n], 0.8, 1.25)
    hue = torch.rand(n, generator=g)
    p = {
        "height": _u(g, [n], 0.74, 0.95),
        "shoulder": 0.105 * build,
        "hip": 0.085 * build * _u(g, [n], 0.85, 1.15),
        "leg_len": _u(g, [n], 0.42, 0.52),
        "leg_w": 0.034 * build * _u(g, [n], 0.85, 1.2),
        "arm_w": 0.024 * build,
        "head_r": _u(g, [n], 0.055, 0.072),
        "upper": _hsv_to_rgb(hue, _u(g, [n], 0.25, 0.95), _u(g, [n], 0.25, 0.95)),
        # secondary colour: hue shifted by 0.25..0.75, different value
        "second": _hsv_to_rgb(
            (hue + _u(g, [n], 0.25, 0.75)) % 1.0, _u(g, [n], 0.0, 0.9), _u(g, [n], 0.1, 1.0)
        ),
        "lower": _hsv_to_rgb(torch.rand(n, generator=g), _u(g, [n], 0.1, 0.9), _u(g, [n], 0.12, 0.85)),
        "skin": _hsv_to_rgb(_u(g, [n], 0.03, 0.09), _u(g, [n], 0.25, 0.6), _u(g, [n], 0.35, 0.95)),
        "hair": _hsv_to_rgb(_u(g, [n], 0.02, 0.12), _u(g, [n], 0.1, 0.7), _u(g, [n], 0.05, 0.8)),
        "bag_rgb": _hsv_to_rgb(torch.rand(n, generator=g), _u(g, [n], 0.1, 0.9), _u(g, [n], 0.1, 0.9)),
        # 0 plain, 1 horizontal stripes, 2 checks, 3 vertical stripes
        "pattern": torch.randint(0, 4, (n,), generator=g).float(),
        "freq": _u(g, [n], 3.0, 6.0),
        "phase": _u(g, [n], 0.0, 2 * math.pi),
        "lower_stripes": (torch.rand(n, generator=g) < 0.25).float(),
        "long_sleeves": (torch.rand(n, generator=g) < 0.6).float(),
        "long_trousers": (torch.rand(n, generator=g) < 0.7).float(),
        "hair_line": _u(g, [n], -0.3, 0.5),  # in head radii above the head centre
        # bag: 0 none, +1 on the person's right side of the image (front view), -1 left
        "bag": torch.randint(-1, 2, (n,), generator=g).float(),
        "bag_h": _u(g, [n], 0.10, 0.2),
        "bag_w": _u(g, [n], 0.05, 0.09),
        # heat (thermal emission), independent of every colour above
        "heat_skin": _u(g, [n], 0.82, 1.0),
        "heat_hair": _u(g, [n], 0.45, 0.65),
        "heat_upper": _u(g, [n], 0.35, 0.75),
        "heat_lower": _u(g, [n], 0.3, 0.7),
        "heat_second": _u(g, [n], 0.12, 0.3) * torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0),
        "heat_bag": _u(g, [n], 0.15, 0.35),
    }
    if style == "bench":
        p.update(_bench_identity_params(n, seed))
        p.pop("second")  # drawn per image
    return p


# the "bench" style's clothing colours: many people share a colour, as in real footage
_BENCH_PALETTE = torch.tensor([
    [0.08, 0.08, 0.09], [0.9, 0.9, 0.88], [0.5, 0.5, 0.52], [0.12, 0.15, 0.35], [0.7, 0.12, 0.12],
    [0.2, 0.4, 0.8], [0.15, 0.45, 0.2], [0.8, 0.72, 0.55], [0.4, 0.25, 0.12], [0.9, 0.8, 0.2],
])

#: the "bench" style's identity: one value of each categorical attribute (values per attribute);
#: every attribute shows by geometry or texture, so in both modalities
BENCH_ATTRIBUTES: dict[str, int] = {
    "build": 3,  # slim / medium / wide: shoulders, hips, limbs
    "legs": 3,  # short / medium / long legs: where the waist is
    "coat": 3,  # top ends at the hips / mid-thigh jacket / knee-length coat
    "sleeves": 3,  # long / short / none (skin is hot and skin-coloured)
    "trousers": 3,  # long / below the knee / shorts
    "pattern": 5,  # plain / horizontal stripes / vertical stripes / checks / chest band
    "bag": 3,  # none / at the hip / at the chest (on the person's own left or right)
    "hat": 2,  # none / cap
}
#: the "bench" style's knobs (docs/benchmark.md logs the values tuned on the baseline arms)
BENCH_STYLE: dict[str, float] = {
    "colour_keep": 0.3,  # chance that an image shows a garment in its owner's colour (else any palette colour)
    "heat_identity": 0.02,  # std of an identity's own heat offset per material (a weak thermal cue)
    "heat_image": 0.04,  # std of the per-image heat jitter per material
    "occluder_p": 0.05,  # chance of a vertical occluder (pole, passer-by) in front of the person
    "shift": 0.03,  # std of the per-image horizontal shift (image heights)
    "scale_jitter": 0.05,  # per-image scale in [1 - j, 1 + j]
}
_BENCH_HEAT = {"heat_skin": 0.9, "heat_hair": 0.55, "heat_upper": 0.5, "heat_lower": 0.44, "heat_bag": 0.3,
               "heat_hat": 0.36}
_BENCH_COLOURS = ("upper", "lower", "bag_rgb", "hat_rgb")


def _bench_identity_params(n: int, seed: int) -> dict[str, torch.Tensor]:
    """The "bench" style's identities (own random stream, so the classic draws stay as they were).

    An identity is a combination of categorical attributes (:data:`BENCH_ATTRIBUTES`) that show
    in both modalities; continuous shape variation within a value is small. Colours and heat
    levels carry little identity information: they are redrawn per image
    (:func:`_bench_image_params`) around weak identity-specific values.
    """
    g = _gen(seed, 4)
    a = {name: torch.randint(0, k, (n,), generator=g) for name, k in BENCH_ATTRIBUTES.items()}

    def pick(values: Sequence[float], index: torch.Tensor, spread: float = 0.0) -> torch.Tensor:
        return torch.tensor(values)[index] * _u(g, [n], 1.0 - spread, 1.0 + spread)

    b = a["build"]
    colour = {name: torch.randint(0, len(_BENCH_PALETTE), (n,), generator=g) for name in _BENCH_COLOURS}
    p = {
        "attributes": torch.stack([a[name] for name in BENCH_ATTRIBUTES], 1),
        "height": _u(g, [n], 0.82, 0.92),
        "shoulder": pick((0.08, 0.105, 0.135), b, 0.03),
        "hip": pick((0.065, 0.087, 0.115), b, 0.03),
        "leg_w": pick((0.026, 0.034, 0.045), b, 0.03),
        "arm_w": pick((0.019, 0.024, 0.031), b, 0.03),
        "leg_len": pick((0.38, 0.46, 0.54), a["legs"], 0.015),
        "head_r": _u(g, [n], 0.058, 0.068),
        "coat": pick((0.0, 0.12, 0.25), a["coat"]),
        "sleeve_frac": pick((0.0, 0.55, 1.0), a["sleeves"]),
        "trouser_frac": pick((0.0, 0.35, 0.62), a["trousers"]),
        "pattern": a["pattern"].float(),
        "freq": _u(g, [n], 2.3, 2.7),
        "phase": torch.zeros(n),
        "lower_stripes": torch.zeros(n),
        "bag": torch.where(a["bag"] > 0, torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0), 0.0),
        "bag_v": pick((0.0, -0.08, 0.13), a["bag"]),  # bottom edge, from the hip line
        "bag_h": _u(g, [n], 0.14, 0.18),
        "bag_w": _u(g, [n], 0.08, 0.1),
        "hat": a["hat"].float(),
        "colour_index": torch.stack([colour[name] for name in _BENCH_COLOURS], 1),
    }
    for name, base in _BENCH_HEAT.items():
        p[name] = base + BENCH_STYLE["heat_identity"] * torch.randn(n, generator=g)
    return p


def _bench_image_params(idp: dict[str, torch.Tensor], shape: tuple[int, int, int], seed: int
                        ) -> dict[str, torch.Tensor]:
    """Per-image draws of the "bench" style: garment colours (the owner's with probability
    ``colour_keep``, else any palette colour), heat jitter per material, the pattern's contrast
    (lighter or darker, in colour and in heat), an occluder, wider pose jitter. Keys ``"id.<name>"``
    replace the identity's ``<name>`` for that image."""
    g = _gen(seed, 5)
    m = len(_BENCH_PALETTE)
    own = idp["colour_index"].reshape(shape[0], 1, 1, -1).expand(*shape, -1)
    keep = torch.rand(own.shape, generator=g) < BENCH_STYLE["colour_keep"]
    index = torch.where(keep, own, torch.randint(0, m, own.shape, generator=g))
    rgb = (_BENCH_PALETTE[index] * _u(g, [*own.shape, 1], 0.85, 1.15)).clamp(0.0, 1.0)
    p = {f"id.{name}": rgb[..., j, :] for j, name in enumerate(_BENCH_COLOURS)}
    upper = p["id.upper"]
    light = upper.mean(-1, keepdim=True) > 0.45
    p["id.second"] = torch.where(light, 0.3 * upper, upper + 0.65 * (1.0 - upper))  # the pattern's colour
    for name in _BENCH_HEAT:
        p[f"id.{name}"] = (idp[name].reshape(-1, 1, 1)
                           + BENCH_STYLE["heat_image"] * torch.randn(shape, generator=g)).clamp(0.05, 0.98)
    p["id.heat_second"] = torch.where(torch.rand(shape, generator=g) < 0.5, -1.0, 1.0) * _u(g, shape, 0.18, 0.28)
    p["id.phase"] = _u(g, shape, -0.6, 0.6)
    p["dx"] = BENCH_STYLE["shift"] * torch.randn(shape, generator=g)
    p["dscale"] = _u(g, shape, 1.0 - BENCH_STYLE["scale_jitter"], 1.0 + BENCH_STYLE["scale_jitter"])
    p["occluder"] = (torch.rand(shape, generator=g) < BENCH_STYLE["occluder_p"]).float()
    p["occluder_x"] = _u(g, shape, 0.15, 0.85)  # centre, as a fraction of the image width
    p["occluder_w"] = _u(g, shape, 0.05, 0.09)  # half-width, in image heights
    p["occluder_rgb"] = _BENCH_PALETTE[torch.randint(0, m, shape, generator=g)]
    p["occluder_heat"] = _u(g, shape, 0.1, 0.6)
    return p


def _camera_params(seed: int) -> dict[str, torch.Tensor]:
    c = len(CAMERAS)
    g = _gen(seed, 2)
    return {
        "thermal": torch.tensor([float(SYSU_CAMERA_MODALITY[k] == THERMAL) for k in CAMERAS]),
        "outdoor": torch.tensor([float(SYSU_CAMERA_SCENE[k] == "outdoor") for k in CAMERAS]),
        "scale": _u(g, [c], 0.82, 1.02),
        "foot": _u(g, [c], 0.93, 0.99),
        "shift": _u(g, [c], -0.05, 0.05),
        "back_view": (torch.rand(c, generator=g) < 0.5).float(),
        "horizon": _u(g, [c], 0.55, 0.8),
        "bg_top": _hsv_to_rgb(torch.rand(c, generator=g), _u(g, [c], 0.05, 0.5), _u(g, [c], 0.35, 0.9)),
        "bg_bottom": _hsv_to_rgb(torch.rand(c, generator=g), _u(g, [c], 0.05, 0.5), _u(g, [c], 0.2, 0.7)),
        "bg_freq": _u(g, [c], 2.0, 6.0),
        "gain": _u(g, [c], 0.7, 1.15),
        "tint": _u(g, [c * 3], 0.85, 1.15).reshape(c, 3),
        "ambient": _u(g, [c], 0.1, 0.3),
        "thermal_gain": _u(g, [c], 0.8, 1.1),
        "noise": _u(g, [c], 0.01, 0.035),
    }


def _image_params(n: int, k: int, seed: int, style: str = "classic",
                  idp: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    shape = (n, len(CAMERAS), k)
    g = _gen(seed, 3)
    p = {
        "dx": 0.03 * torch.randn(shape, generator=g),
        "dy": 0.01 * torch.randn(shape, generator=g),
        "dscale": _u(g, shape, 0.93, 1.05),
        "leg_swing": _u(g, shape, -0.06, 0.06),
        "arm_swing": _u(g, shape, -0.05, 0.05),
        "lean": 0.03 * torch.randn(shape, generator=g),
        "light": _u(g, shape, 0.85, 1.1),
        "bg_phase": _u(g, shape, 0.0, 2 * math.pi),
        "noise_seed": torch.randint(0, 2**31 - 1, shape, generator=g),
    }
    if style == "bench":
        assert idp is not None
        p.update(_bench_image_params(idp, shape, seed))
    return p


# ---------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------
def _soft(d: torch.Tensor, softness: torch.Tensor) -> torch.Tensor:
    """Anti-aliased inside-mask from a signed distance (positive inside)."""
    return torch.sigmoid(d / softness)


def _box(u: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, half_w: torch.Tensor,
         v0: torch.Tensor, v1: torch.Tensor) -> torch.Tensor:
    """Signed distance-like value of the box |u - cu| <= half_w, v0 <= v <= v1."""
    return torch.minimum(torch.minimum(half_w - (u - cu).abs(), v - v0), v1 - v)


def render_params(
    idp: dict[str, torch.Tensor],
    camp: dict[str, torch.Tensor],
    imp: dict[str, torch.Tensor],
    size: tuple[int, int],
) -> torch.Tensor:
    """Render a batch from gathered parameter rows: float ``(N, 3, H, W)`` in [0, 1].

    Every tensor in ``idp`` / ``camp`` / ``imp`` has the batch as its first dimension. Noise
    is drawn per image from its own ``noise_seed``, so an image's pixels do not depend on
    which other images share its batch.
    """
    h_px, w_px = size
    n = imp["dx"].shape[0]
    overrides = {name[3:]: t for name, t in imp.items() if name.startswith("id.")}
    if overrides:  # "bench" style: per-image colours and heat replace the identity's
        idp = {**idp, **overrides}

    def col(t: torch.Tensor) -> torch.Tensor:  # (N,) -> (N, 1, 1)
        return t.reshape(n, 1, 1)

    # pixel centres in units of the image height
    ys = ((torch.arange(h_px, dtype=torch.float32) + 0.5) / h_px).reshape(1, h_px, 1)
    xs = ((torch.arange(w_px, dtype=torch.float32) + 0.5) / h_px).reshape(1, 1, w_px)
    hgt = col(idp["height"] * camp["scale"] * imp["dscale"])
    foot = col(camp["foot"] + imp["dy"])
    cx = col(0.5 * w_px / h_px + camp["shift"] + imp["dx"])
    v = (foot - ys) / hgt  # 0 at the feet, 1 at the top of the head
    u = (xs - cx) / hgt
    u = u - col(imp["lean"]) * v
    back = col(camp["back_view"])
    u_body = torch.where(back > 0, -u, u)  # the person's own left/right (back view mirrors)
    soft = 0.6 / (hgt * h_px)  # a bit over half a pixel, in body units

    leg_len, leg_w, hip, shoulder = (col(idp[k]) for k in ("leg_len", "leg_w", "hip", "shoulder"))
    head_r, arm_w = col(idp["head_r"]), col(idp["arm_w"])
    neck = 1.0 - 2.0 * head_r - 0.01
    zero = torch.zeros_like(leg_len)

    # legs (two boxes whose feet swing apart/together)
    swing = col(imp["leg_swing"]) * (1.0 - v / leg_len).clamp(0.0, 1.0)
    leg_d = torch.maximum(
        _box(u, v, -(0.55 * hip + swing), leg_w, zero, leg_len + 0.03),
        _box(u, v, 0.55 * hip + swing, leg_w, zero, leg_len + 0.03),
    )
    legs = _soft(leg_d, soft)
    # torso: a trapezoid from the hips to the shoulders
    t = ((v - leg_len) / (neck - leg_len)).clamp(0.0, 1.0)
    torso = _soft(_box(u, v, zero, hip + (shoulder - hip) * t, leg_len - 0.04, neck), soft)
    # arms: from the shoulders down to the hands, swinging
    hand = leg_len - 0.03
    aswing = col(imp["arm_swing"]) * ((neck - v) / (neck - hand)).clamp(0.0, 1.0)
    arm_c = shoulder + 0.9 * arm_w
    arms = _soft(
        torch.maximum(
            _box(u, v, -(arm_c + aswing), arm_w, hand, neck - 0.005),
            _box(u, v, arm_c - aswing, arm_w, hand, neck - 0.005),
        ),
        soft,
    )
    # head: an ellipse; hair above the hair line (the whole head seen from the back)
    head_cv = 1.0 - head_r
    head = _soft(head_r - torch.sqrt((u / 0.85) ** 2 + (v - head_cv) ** 2 + 1e-12), soft)
    hair_line = torch.where(back > 0, -2.0 * head_r, col(idp["hair_line"]) * head_r)
    hair = _soft(v - head_cv - hair_line, soft)
    # bag at the side of the hips, on the person's own side
    bag_side = col(idp["bag"])
    bag_c = bag_side * (hip + 0.6 * col(idp["bag_w"]) + 0.035)
    bag_v0 = leg_len + (col(idp["bag_v"]) if "bag_v" in idp else -0.08)
    bag = _soft(_box(u_body, v, bag_c, 0.5 * col(idp["bag_w"]), bag_v0, bag_v0 + col(idp["bag_h"])), soft)
    bag = bag * bag_side.abs()

    # clothing pattern on the torso (and arms for stripes): 0/1 "second material" map
    pattern = col(idp["pattern"])
    freq, phase = col(idp["freq"]), col(idp["phase"])
    stripes_h = torch.sin(2 * math.pi * freq * (v - leg_len) / (neck - leg_len) + phase)
    stripes_v = torch.sin(2 * math.pi * freq * u_body / (2.0 * shoulder) + phase)
    sharp = 6.0
    plain = torch.zeros_like(v)
    if "coat" in idp:  # "bench" style: pattern 4, a band across the chest
        torso_h = neck - leg_len
        plain = torch.where(pattern == 4, _soft(0.13 * torso_h - (v - leg_len - 0.62 * torso_h).abs(), soft), plain)
    second = torch.where(
        pattern == 1, torch.sigmoid(sharp * stripes_h),
        torch.where(pattern == 2, torch.sigmoid(sharp * stripes_h * stripes_v),
                    torch.where(pattern == 3, torch.sigmoid(sharp * stripes_v), plain)),
    )
    lower_second = col(idp["lower_stripes"]) * torch.sigmoid(
        sharp * torch.sin(2 * math.pi * u_body / (0.9 * leg_w) + phase)
    )
    # skin on forearms (short sleeves) and lower legs (short trousers); shoes at the feet
    if "sleeve_frac" in idp:  # "bench" style: 0 long, 1 sleeveless
        sleeve_end = hand + 0.035 + col(idp["sleeve_frac"]) * (neck - hand - 0.035)
    else:
        sleeve_end = torch.where(col(idp["long_sleeves"]) > 0, hand + 0.035, 0.5 * (hand + neck))
    arm_skin = _soft(sleeve_end - v, soft)
    if "trouser_frac" in idp:  # "bench" style: 0 long, larger = shorter
        trouser_end = 0.04 + col(idp["trouser_frac"]) * (leg_len - 0.04)
    else:
        trouser_end = torch.where(col(idp["long_trousers"]) > 0, zero + 0.04, 0.55 * leg_len)
    leg_skin = _soft(trouser_end - v, soft) * _soft(v - 0.04, soft)
    shoes = _soft(0.04 - v, soft)

    # materials as 4 channels: RGB colour + heat
    def mat(rgb: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:  # (N,3),(N,) -> (N,4,1,1)
        return torch.cat([rgb, heat.unsqueeze(-1)], dim=-1).reshape(n, 4, 1, 1)

    skin = mat(idp["skin"], idp["heat_skin"])
    upper = mat(idp["upper"], idp["heat_upper"])
    upper2 = mat(idp["second"], (idp["heat_upper"] + idp["heat_second"]).clamp(0.05, 0.95))
    lower = mat(idp["lower"], idp["heat_lower"])
    lower2 = mat(0.55 * idp["lower"] + 0.45 * idp["second"], (idp["heat_lower"] + 0.5 * idp["heat_second"]).clamp(0.05, 0.95))
    hair_m = mat(idp["hair"], idp["heat_hair"])
    bag_m = mat(idp["bag_rgb"], idp["heat_bag"])
    shoe_m = mat(torch.full((n, 3), 0.08), torch.full((n,), 0.35))

    def over(img: torch.Tensor, mask: torch.Tensor, layer: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(1)
        return img + m * (layer - img)

    # background: 3 colour channels + ambient heat channel
    outdoor = col(camp["outdoor"])
    horizon = col(camp["horizon"])
    ground = _soft(ys - horizon, torch.full_like(horizon, 0.01))
    tex_phase = col(imp["bg_phase"])
    bg_freq = col(camp["bg_freq"])
    # indoor: vertical wall panels; outdoor: blotchy foliage/sky
    tex_in = torch.sin(2 * math.pi * bg_freq * xs / (w_px / h_px) + tex_phase)
    tex_out = torch.sin(2 * math.pi * bg_freq * (xs + 0.7 * ys) + tex_phase) * torch.sin(
        2 * math.pi * 1.7 * bg_freq * ys - tex_phase
    )
    tex = torch.where(outdoor > 0, tex_out, tex_in) * (1.0 - ground)
    top = camp["bg_top"].reshape(n, 3, 1, 1)
    bottom = camp["bg_bottom"].reshape(n, 3, 1, 1)
    bg_rgb = top + ground.unsqueeze(1) * (bottom - top)
    bg_rgb = bg_rgb * (1.0 + 0.12 * tex.unsqueeze(1))
    ambient = col(camp["ambient"]) * (1.0 + 0.15 * tex - 0.2 * ground * (ys - horizon))
    img = torch.cat([bg_rgb, ambient.unsqueeze(1)], dim=1)  # (N, 4, H, W)

    # paint back to front
    leg_layer = lower + lower_second.unsqueeze(1) * (lower2 - lower)
    leg_layer = leg_layer + leg_skin.unsqueeze(1) * (skin - leg_layer)
    leg_layer = leg_layer + shoes.unsqueeze(1) * (shoe_m - leg_layer)
    img = over(img, legs, leg_layer)
    top_layer = upper + second.unsqueeze(1) * (upper2 - upper)
    if "coat" in idp:  # "bench" style: a jacket or coat below the hips, flaring out
        coat_d = _box(u, v, zero, 1.1 * hip + 0.25 * (leg_len - v).clamp(min=0.0), leg_len - col(idp["coat"]), leg_len)
        img = over(img, _soft(coat_d, soft) * (col(idp["coat"]) > 0), upper)
    img = over(img, torso, top_layer)
    img = over(img, bag, bag_m.expand_as(img))
    arm_layer = upper + second.unsqueeze(1) * (upper2 - upper)
    arm_layer = arm_layer + arm_skin.unsqueeze(1) * (skin - arm_layer)
    img = over(img, arms, arm_layer)
    head_layer = skin + hair.unsqueeze(1) * (hair_m - skin)
    img = over(img, head, head_layer)
    if "hat" in idp:  # "bench" style
        # a tall hat: from mid-head to above the top of the head, a little wider than the head
        cap = col(idp["hat"]) * _soft(_box(u, v, zero, 1.15 * head_r, head_cv + 0.1 * head_r, 1.0 + 0.9 * head_r), soft)
        img = over(img, cap, mat(idp["hat_rgb"], idp["heat_hat"]))

    if "occluder" in imp:  # "bench" style: a pole or passer-by in front of the person
        occ_x = col(imp["occluder_x"]) * (w_px / h_px)
        occ = col(imp["occluder"]) * _soft(col(imp["occluder_w"]) - (xs - occ_x).abs() + zero, 0.6 / h_px + zero)
        img = over(img, occ, mat(imp["occluder_rgb"], imp["occluder_heat"]))

    # sensors
    rgb, heat = img[:, :3], img[:, 3:]
    shade = 1.0 - 0.15 * ys.unsqueeze(1)  # light from above
    light = col(camp["gain"] * imp["light"]).unsqueeze(1)
    rgb = rgb * shade * light * camp["tint"].reshape(n, 3, 1, 1)
    heat = col(camp["ambient"]).unsqueeze(1) + col(camp["thermal_gain"]).unsqueeze(1) * (
        heat - col(camp["ambient"]).unsqueeze(1)
    )
    heat = F.avg_pool2d(F.pad(heat, (1, 1, 1, 1), mode="replicate"), 3, stride=1)  # thermal blur
    thermal = col(camp["thermal"]).unsqueeze(1) > 0
    out = torch.where(thermal, heat.expand(-1, 3, -1, -1), rgb)
    noise = torch.stack(
        [torch.randn(1 if th else 3, h_px, w_px, generator=torch.Generator().manual_seed(int(s))).expand(3, -1, -1)
         for s, th in zip(imp["noise_seed"].tolist(), camp["thermal"].tolist())]
    )
    out = out + col(camp["noise"]).unsqueeze(1) * noise
    return out.clamp(0.0, 1.0)


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255.0 + 0.5).floor().clamp(0, 255).to(torch.uint8)


class SyntheticRenderer:
    """The ``loader`` of synthetic data: renders ``"synthetic://<id>/<cam>/<k>"`` keys.

    ``renderer(sample)`` -> ``uint8`` ``(3, H, W)``; ``renderer.render(ids, cams, ks)`` and
    ``renderer.render_paths(paths)`` -> ``(N, 3, H, W)`` in one vectorised pass. With
    ``cache=True`` everything is rendered once, in chunks, on first use. Deterministic:
    the same seed, sizes and key give the same pixels. Picklable (for DataLoader workers).
    """

    def __init__(
        self,
        num_identities: int,
        images_per_camera: int,
        size: tuple[int, int] = (64, 32),
        seed: int = 0,
        cache: bool | None = None,
        style: str = "classic",
    ) -> None:
        if style not in STYLES:
            raise ValueError(f"unknown synthetic style {style!r}; choose one of {list(STYLES)}")
        if num_identities < 1 or images_per_camera < 1:
            raise ValueError(
                f"num_identities and images_per_camera must be >= 1, got {num_identities} and {images_per_camera}"
            )
        size = (int(size[0]), int(size[1]))
        if min(size) < 8:
            raise ValueError(f"size (H, W) must be at least 8 x 8 pixels, got {size}")
        self.num_identities = int(num_identities)
        self.images_per_camera = int(images_per_camera)
        self.size = size
        self.seed = int(seed)
        self.style = style
        self._id = _identity_params(self.num_identities, self.seed, style)
        self._cam = _camera_params(self.seed)
        self._img = _image_params(self.num_identities, self.images_per_camera, self.seed, style, self._id)
        nbytes = self.num_identities * len(CAMERAS) * self.images_per_camera * 3 * size[0] * size[1]
        self.cache = nbytes <= _CACHE_LIMIT if cache is None else bool(cache)
        self._store: torch.Tensor | None = None

    def _check(self, ids: torch.Tensor, cams: torch.Tensor, ks: torch.Tensor) -> None:
        bad = [
            (name, t, hi)
            for name, t, hi in (("identity", ids, self.num_identities), ("index", ks, self.images_per_camera))
            if t.numel() and (int(t.min()) < 0 or int(t.max()) >= hi)
        ]
        if bad:
            name, t, hi = bad[0]
            raise ValueError(f"synthetic {name} out of range [0, {hi}): got values in [{int(t.min())}, {int(t.max())}]")
        if cams.numel() and not all(int(c) in SYSU_CAMERA_MODALITY for c in cams.unique()):
            raise ValueError(f"synthetic cameras are {list(CAMERAS)}, got {sorted(set(cams.tolist()))}")

    def render(self, ids: Sequence[int] | torch.Tensor, cams: Sequence[int] | torch.Tensor,
               ks: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """``uint8`` ``(N, 3, H, W)`` images of (identity, camera number, index) triples."""
        ids, cams, ks = (torch.as_tensor(t, dtype=torch.long).reshape(-1) for t in (ids, cams, ks))
        if not ids.shape == cams.shape == ks.shape:
            raise ValueError(f"ids, cams and ks must have one length, got {len(ids)}, {len(cams)}, {len(ks)}")
        self._check(ids, cams, ks)
        ci = cams - 1
        if self.cache:
            return self._all()[ids, ci, ks]
        return self._render(ids, ci, ks)

    def _render(self, ids: torch.Tensor, ci: torch.Tensor, ks: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        out = []
        for s in range(0, len(ids), chunk):
            i, c, k = ids[s : s + chunk], ci[s : s + chunk], ks[s : s + chunk]
            idp = {name: t[i] for name, t in self._id.items()}
            camp = {name: t[c] for name, t in self._cam.items()}
            imp = {name: t[i, c, k] for name, t in self._img.items()}
            out.append(_to_uint8(render_params(idp, camp, imp, self.size)))
        if not out:
            return torch.zeros(0, 3, *self.size, dtype=torch.uint8)
        return torch.cat(out)

    def _all(self) -> torch.Tensor:
        if self._store is None:
            n, c, k = self.num_identities, len(CAMERAS), self.images_per_camera
            grid = torch.cartesian_prod(torch.arange(n), torch.arange(c), torch.arange(k))
            self._store = self._render(grid[:, 0], grid[:, 1], grid[:, 2]).reshape(n, c, k, 3, *self.size)
        return self._store

    def render_paths(self, paths: Sequence[str]) -> torch.Tensor:
        """``uint8`` ``(N, 3, H, W)`` images of ``synthetic://`` keys."""
        triples = [parse_synthetic_key(p) for p in paths]
        if not triples:
            return torch.zeros(0, 3, *self.size, dtype=torch.uint8)
        ids, cams, ks = zip(*triples)
        return self.render(ids, cams, ks)

    def __call__(self, sample: Sample | str) -> torch.Tensor:
        path = sample if isinstance(sample, str) else sample.path
        return self.render_paths([path])[0]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_store"] = None  # workers re-render rather than copy the cache
        return state

    def __repr__(self) -> str:
        return (
            f"SyntheticRenderer(num_identities={self.num_identities}, images_per_camera="
            f"{self.images_per_camera}, size={self.size}, seed={self.seed}, cache={self.cache}, style={self.style!r})"
        )


def make_synthetic(
    preset: str = "demo",
    *,
    num_identities: int | None = None,
    num_train_identities: int | None = None,
    images_per_camera: int | None = None,
    size: tuple[int, int] | None = None,
    seed: int = 0,
    both_directions: bool = False,
    cache: bool | None = None,
    style: str | None = None,
) -> ReIDData:
    """Synthetic SYSU-like cross-modality data (see the module docstring).

    Args:
        preset: ``"demo"`` (64 ids: 32 train / 32 test, 4 images per camera, 64 x 32 px),
            ``"large"`` (491 ids: 395 / 96, 10 per camera, 256 x 128 px), the benchmark's
            ``"bench"`` (364 ids: 300 / 64, 4 per camera, 64 x 32 px, ``style="bench"``) or
            ``"bench-large"`` (496 ids: 400 / 96, 10 per camera, 128 x 64 px, for a GPU);
            the keyword arguments below override it.
        num_identities: identities in all; ``num_train_identities`` of them (the lowest ids)
            train, the rest test.
        images_per_camera: images per identity per camera (6 cameras).
        size: ``(H, W)`` of the rendered images.
        seed: everything (people, cameras, poses, noise) follows from it.
        both_directions: ``False`` (default, SYSU-like): ``query`` = thermal test images,
            ``gallery`` = visible test images; ``True``: every test image in both lists, so
            :func:`~mag_mmt.data.records.query_gallery` gives both search directions.
        cache: render every image once on first use and keep it (default: when it needs
            at most 256 MiB, so for ``"demo"`` and ``"bench"`` but not the large presets).
        style: the generator: ``"classic"`` (``"demo"``, ``"large"``) or ``"bench"`` (see the
            module docstring); default: the preset's.

    Returns:
        :class:`ReIDData` named ``"synthetic"``; ``loader`` is a :class:`SyntheticRenderer`;
        ``meta``: ``root`` (``"synthetic://"``), ``train_id_map``, ``camera_modality``,
        ``camera_scene``, ``visible_cameras``, ``thermal_cameras``, ``size``, ``seed``,
        ``preset``, ``num_identities``, ``images_per_camera``, ``test_ids``.

    Example::

        >>> data = make_synthetic("demo", num_identities=8, num_train_identities=4)
        >>> len(data.train), data.num_train_identities, data.loader(data.query[0]).shape
        (96, 4, torch.Size([3, 64, 32]))
    """
    if preset not in SYNTHETIC_PRESETS:
        raise ValueError(f"unknown synthetic preset {preset!r}; choose one of {sorted(SYNTHETIC_PRESETS)}")
    cfg = dict(SYNTHETIC_PRESETS[preset])
    for key, value in (("num_identities", num_identities), ("num_train_identities", num_train_identities),
                       ("images_per_camera", images_per_camera), ("size", size), ("style", style)):
        if value is not None:
            cfg[key] = value
    n, n_train, k = int(cfg["num_identities"]), int(cfg["num_train_identities"]), int(cfg["images_per_camera"])
    if num_identities is not None and num_train_identities is None:
        n_train = n // 2
    if not 1 <= n_train < n:
        raise ValueError(
            f"num_train_identities must be in [1, num_identities - 1] so both train and test have "
            f"identities, got {n_train} of {n}"
        )
    if not (isinstance(cfg["size"], Sequence) and len(cfg["size"]) == 2):
        raise ValueError(f"size must be (H, W), got {cfg['size']!r}")
    renderer = SyntheticRenderer(n, k, tuple(cfg["size"]), seed=seed, cache=cache,
                                 style=cfg.get("style", "classic"))

    def samples(pid: int, label: int, cams: Sequence[int]) -> list[Sample]:
        return [Sample(synthetic_key(pid, cam, i), label, cam, SYSU_CAMERA_MODALITY[cam])
                for cam in cams for i in range(k)]

    visible = tuple(c for c in CAMERAS if SYSU_CAMERA_MODALITY[c] == VISIBLE)
    thermal = tuple(c for c in CAMERAS if SYSU_CAMERA_MODALITY[c] == THERMAL)
    train = [s for pid in range(n_train) for s in samples(pid, pid, CAMERAS)]
    test_ids = list(range(n_train, n))
    if both_directions:
        query = [s for pid in test_ids for s in samples(pid, pid, CAMERAS)]
        gallery = list(query)
    else:
        query = [s for pid in test_ids for s in samples(pid, pid, thermal)]
        gallery = [s for pid in test_ids for s in samples(pid, pid, visible)]
    meta = {
        "root": "synthetic://",
        "train_id_map": {pid: pid for pid in range(n_train)},
        "camera_modality": dict(SYSU_CAMERA_MODALITY),
        "camera_scene": dict(SYSU_CAMERA_SCENE),
        "visible_cameras": list(visible),
        "thermal_cameras": list(thermal),
        "size": tuple(renderer.size),
        "seed": int(seed),
        "preset": preset,
        "num_identities": n,
        "images_per_camera": k,
        "test_ids": test_ids,
        "style": renderer.style,
    }
    return ReIDData("synthetic", train, query, gallery, loader=renderer, meta=meta, protocol="sysu")


__all__ = [
    "SYNTHETIC_PRESETS",
    "SyntheticRenderer",
    "make_synthetic",
    "parse_synthetic_key",
    "render_params",
    "synthetic_key",
]
