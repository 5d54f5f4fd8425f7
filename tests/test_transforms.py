"""Tests for mag_mmt.transforms: the batched ReID augmentations against per-image references
(torchvision's and CAJ's transforms, tests/reference_transforms.py)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from hypothesis import given
from hypothesis import strategies as st

from mag_mmt.augment import ModalityAugment
from mag_mmt.errors import UserError
from mag_mmt.functional import exchange_mask, modality_exchange
from mag_mmt.transforms import (
    CAJ_ERASE_VALUE,
    CrossModalAugment,
    ReIDTransform,
    channel_mix,
    color_jitter,
    crop_flip,
    normalize,
    random_erase,
    sample_channel_params,
    sample_crop_flip_params,
    sample_erasing_params,
    sample_jitter_params,
)
from tests.reference_augment import ks_uniform
from tests.reference_transforms import (
    caj_adapgray_code,
    caj_channel,
    caj_erase,
    caj_erasing_params,
    caj_exchange_code,
    ks_critical,
    ks_two_sample,
    tv_crop_flip,
    tv_crop_flip_params,
)

N = 20000  # draws per distribution test


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(b, c, h, w, dtype=torch.float32, seed=0):
    x = torch.rand(b, c, h, w, generator=gen(seed))
    return (x * 255).round().to(torch.uint8) if dtype == torch.uint8 else x.to(dtype)


def assert_frequencies(samples: np.ndarray, probs: dict, n_sigma: float = 5.0):
    """Each value's frequency within ``n_sigma`` binomial standard deviations of its law."""
    n = len(samples)
    assert set(np.unique(samples).tolist()) <= set(probs)
    for value, p in probs.items():
        freq = float(np.mean(samples == value))
        assert abs(freq - p) <= n_sigma * np.sqrt(p * (1 - p) / n) + 1e-12, (value, freq, p)


# ------------------------------------------------------------------------------------------
# pad + crop + flip
# ------------------------------------------------------------------------------------------
@given(
    b=st.integers(1, 4), c=st.sampled_from([1, 3]), h=st.integers(1, 12), w=st.integers(1, 12),
    padding=st.integers(0, 4), dh=st.integers(0, 8), dw=st.integers(0, 8),
    dtype=st.sampled_from([torch.float32, torch.uint8]), seed=st.integers(0, 2**31 - 1),
)
def test_crop_flip_matches_torchvision_per_image(b, c, h, w, padding, dh, dw, dtype, seed):
    size = (max(1, h + 2 * padding - dh), max(1, w + 2 * padding - dw))
    x = batch(b, c, h, w, dtype, seed)
    prm = sample_crop_flip_params(b, h, w, size, padding=padding, generator=gen(seed))
    out = crop_flip(x, prm["offset"], prm["flip"], size, padding)
    assert out.shape == (b, c, *size) and out.dtype == dtype
    for i in range(b):
        top, left = prm["offset"][i].tolist()
        ref = tv_crop_flip(x[i], top, left, bool(prm["flip"][i]), size, padding)
        assert torch.equal(out[i], ref)


def test_crop_equals_slicing_the_padded_image_and_flip_twice_is_identity():
    x = batch(3, 3, 20, 12, seed=1)
    off = torch.tensor([[0, 0], [5, 3], [10, 10]])
    no = torch.zeros(3, dtype=torch.bool)
    out = crop_flip(x, off, no, (18, 9), padding=5, fill=0.25)
    padded = F.pad(x, (5, 5, 5, 5), value=0.25)
    for i, (t, l) in enumerate(off.tolist()):
        assert torch.equal(out[i], padded[i, :, t:t + 18, l:l + 9])
    yes = torch.tensor([True, False, True])
    zero = torch.zeros(3, 2, dtype=torch.long)
    once = crop_flip(x, zero, yes, (20, 12), padding=0)
    assert torch.equal(once[0], x[0].flip(-1)) and torch.equal(once[1], x[1])
    assert torch.equal(crop_flip(once, zero, yes, (20, 12), padding=0), x)


def test_crop_offsets_and_flip_follow_torchvisions_law():
    size, pad = (288, 144), 10
    prm = sample_crop_flip_params(N, 288, 144, size, padding=pad, generator=gen(0))
    uniform21 = {k: 1 / 21 for k in range(21)}
    assert_frequencies(prm["offset"][:, 0].numpy(), uniform21)
    assert_frequencies(prm["offset"][:, 1].numpy(), uniform21)
    assert_frequencies(prm["flip"].numpy().astype(int), {0: 0.5, 1: 0.5})
    # and torchvision's own get_params on a (smaller) padded image agrees in law
    torch.manual_seed(0)
    img = torch.zeros(1, 30, 14)
    ref = np.array([tv_crop_flip_params(img, (28, 12), 3)[:2] for _ in range(4000)])
    ours = sample_crop_flip_params(4000, 30, 14, (28, 12), padding=3, generator=gen(1))["offset"].numpy()
    for k in range(2):
        assert ks_two_sample(ref[:, k], ours[:, k]) < ks_critical(4000, 4000)
    assert set(np.unique(ref[:, 0])) == set(np.unique(ours[:, 0])) == set(range(9))


# ------------------------------------------------------------------------------------------
# channel-wise random erasing
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,p", [((288, 144), 0.5), ((40, 20), 0.5), ((24, 8), 1.0)])
def test_erasing_law_matches_cajs_loop(shape, p):
    h, w = shape
    prm = sample_erasing_params(N, h, w, p=p, generator=gen(2))
    rng = random.Random(3)
    ref = np.array([caj_erasing_params(rng, h, w, p=p) for _ in range(N)])
    applied = prm["batch_prob"].numpy()
    ref_applied = ref[:, 0].astype(bool)
    # P(erased): the two samplers agree (5 sigma of the difference of two binomials)
    q = ref_applied.mean()
    assert abs(applied.mean() - q) <= 5 * np.sqrt(2 * q * (1 - q) / N) + 1e-9
    sizes = prm["size"].numpy()[applied]
    tops = prm["boxes"][:, 1].numpy()[applied]
    lefts = prm["boxes"][:, 0].numpy()[applied]
    crit = ks_critical(len(sizes), int(ref_applied.sum()))
    for ours, theirs in ((sizes[:, 0], ref[ref_applied, 3]), (sizes[:, 1], ref[ref_applied, 4]),
                         (sizes[:, 0] * sizes[:, 1], ref[ref_applied, 3] * ref[ref_applied, 4]),
                         (tops, ref[ref_applied, 1]), (lefts, ref[ref_applied, 2])):
        assert ks_two_sample(ours, theirs) < crit
    # every kept box fits strictly, as CAJ's acceptance test demands
    assert (sizes[:, 0] < h).all() and (sizes[:, 1] < w).all()
    assert (prm["boxes"][:, 3] <= h).all() and (prm["boxes"][:, 2] <= w).all()


def test_erasing_without_a_fitting_try_erases_nothing():
    # a 2x2 image: every try gives h or w >= 2 with sl = sh = 0.9, so nothing fits
    prm = sample_erasing_params(50, 2, 2, p=1.0, scale=(0.9, 0.9), generator=gen(0))
    assert not prm["batch_prob"].any()
    assert caj_erasing_params(random.Random(0), 2, 2, p=1.0, sl=0.9, sh=0.9)[0] is False


@given(b=st.integers(1, 4), c=st.sampled_from([1, 2, 3]), h=st.integers(2, 16), w=st.integers(2, 16),
       dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 2**31 - 1))
def test_erase_apply_matches_caj_and_touches_only_the_box(b, c, h, w, dtype, seed):
    x = batch(b, c, h, w, dtype, seed) + 2.0  # never equal to the fill values
    prm = sample_erasing_params(b, h, w, p=0.7, generator=gen(seed))
    out = random_erase(x, prm["boxes"], prm["batch_prob"])
    mask = exchange_mask(prm["boxes"], h, w, prm["batch_prob"]).expand(b, c, h, w)
    if c != 3:
        mask = mask & (torch.arange(c) == 0).view(1, c, 1, 1)
    assert torch.equal(out[~mask], x[~mask])
    assert bool((out[mask] < 1).all())
    for i in range(b):
        x1, y1, x2, y2 = prm["boxes"][i].tolist()
        ref = caj_erase(x[i], y1, x1, y2 - y1, x2 - x1, CAJ_ERASE_VALUE) if prm["batch_prob"][i] else x[i]
        assert torch.equal(out[i], ref)


# ------------------------------------------------------------------------------------------
# channel exchange / adaptive gray
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gray,probs", [(2, {0: 1 / 3, 1: 1 / 3, 2: 1 / 3}),
                                        (3, {0: 1 / 4, 1: 1 / 4, 2: 1 / 4, 3: 1 / 4}),
                                        (4, {0: 1 / 5, 1: 1 / 5, 2: 1 / 5, 3: 2 / 5})])
def test_channel_exchange_law(gray, probs):
    ours = sample_channel_params(N, "exchange", gray=gray, generator=gen(4))["code"].numpy()
    rng = random.Random(5)
    theirs = np.array([caj_exchange_code(rng, gray) for _ in range(N)])
    assert_frequencies(ours, probs)
    assert_frequencies(theirs, probs)


@pytest.mark.parametrize("p", [0.5, 0.0, 1.0])
def test_adaptive_gray_law(p):
    probs = {0: 0.25, 1: 0.25, 2: 0.25, 3: 0.25 * p, 4: 0.25 * (1 - p)}
    ours = sample_channel_params(N, "adaptive_gray", p=p, generator=gen(6))["code"].numpy()
    rng = random.Random(7)
    theirs = np.array([caj_adapgray_code(rng, p) for _ in range(N)])
    assert_frequencies(ours, probs)
    assert_frequencies(theirs, probs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_channel_mix_matches_caj_for_every_code(dtype):
    x = batch(10, 3, 6, 5, dtype, seed=8)
    code = torch.tensor([0, 1, 2, 3, 4, 4, 3, 2, 1, 0])
    out = channel_mix(x, code)
    for i in range(10):
        ref = caj_channel(x[i], int(code[i]))
        if code[i] == 3:  # gray: a matrix product may sum in another order (or fused)
            assert torch.allclose(out[i].float(), ref.float(), atol=1 if dtype == torch.uint8 else 1e-6)
        else:  # replicate / keep: exact copies
            assert torch.equal(out[i], ref)
    assert torch.equal(out[4], x[4])


# ------------------------------------------------------------------------------------------
# colour jitter and normalisation
# ------------------------------------------------------------------------------------------
def test_jitter_factors_follow_torchvisions_ranges():
    prm = sample_jitter_params(N, brightness=0.4, contrast=(0.5, 1.5), saturation=0.2, hue=0.1, generator=gen(9))
    crit = 1.95 / np.sqrt(N) * 1.5
    assert ks_uniform(prm["brightness"].numpy(), 0.6, 1.4) < crit
    assert ks_uniform(prm["contrast"].numpy(), 0.5, 1.5) < crit
    assert ks_uniform(prm["saturation"].numpy(), 0.8, 1.2) < crit
    assert ks_uniform(prm["hue"].numpy(), -0.1, 0.1) < crit


def test_color_jitter_matches_torchvision_functional():
    x = batch(6, 3, 12, 8, seed=10)
    prm = sample_jitter_params(6, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2, generator=gen(11))
    out = color_jitter(x, prm)
    for i in range(6):
        ref = TF.adjust_brightness(x[i], float(prm["brightness"][i]))
        ref = TF.adjust_contrast(ref, float(prm["contrast"][i]))
        ref = TF.adjust_saturation(ref, float(prm["saturation"][i]))
        ref = TF.adjust_hue(ref, float(prm["hue"][i]))
        assert torch.allclose(out[i], ref, atol=2e-3), (out[i] - ref).abs().max()


def test_normalize_is_totensor_then_normalize():
    x = batch(2, 3, 4, 4, torch.uint8, seed=12)
    ref = torch.stack([TF.normalize(TF.convert_image_dtype(x[i], torch.float32),
                                    [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]) for i in range(2)])
    assert torch.allclose(normalize(x), ref, atol=1e-6)
    assert torch.allclose(normalize(x.float() / 255), ref, atol=1e-6)


# ------------------------------------------------------------------------------------------
# pipelines
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["agw", "caj_visible", "caj_visible_exchange", "caj_thermal"])
def test_preset_view_equals_the_per_image_chain(preset):
    t = getattr(ReIDTransform, preset)(size=(40, 20), generator=13)
    x = batch(8, 3, 40, 20, torch.uint8, seed=14)
    out = t(x)
    prm = t._params
    for i in range(8):
        top, left = prm["crop_flip"]["offset"][i].tolist()
        ref = tv_crop_flip(x[i], top, left, bool(prm["crop_flip"]["flip"][i]), (40, 20), 10)
        ref = TF.normalize(TF.convert_image_dtype(ref, torch.float32), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        if "erase" in prm and prm["erase"]["batch_prob"][i]:
            x1, y1, x2, y2 = prm["erase"]["boxes"][i].tolist()
            ref = caj_erase(ref, y1, x1, y2 - y1, x2 - x1, CAJ_ERASE_VALUE)
        if "channel" in prm:
            ref = caj_channel(ref, int(prm["channel"]["code"][i]))
        assert torch.allclose(out[i], ref, atol=1e-6)
    assert ("erase" in prm) == (preset != "agw")
    assert ("channel" in prm) == (preset in ("caj_visible_exchange", "caj_thermal"))


def test_replay_seeds_and_input_dtypes():
    x = batch(6, 3, 32, 16, torch.uint8, seed=15)
    make = lambda seed: ReIDTransform.caj_thermal(size=(32, 16), jitter={"brightness": 0.3}, generator=seed)  # noqa: E731
    a, b = make(0), make(0)
    ya, yb = a(x), b(x)
    assert torch.equal(ya, yb)                                      # one seed, one output
    assert torch.equal(a(x, params=a._params), ya)                  # replay
    assert not torch.equal(a(x), ya)                                # the next draw differs
    assert not torch.equal(make(1)(x), ya)
    yf = make(0)(x.float() / 255)                                   # float input in [0, 1]
    assert torch.allclose(yf, ya, atol=1e-5)
    assert ya.shape == (6, 3, 32, 16) and ya.dtype == torch.float32


def test_cross_modal_pipeline_equals_its_parts_and_replays():
    vis = [ReIDTransform.caj_visible(size=(32, 16)), ReIDTransform.caj_visible_exchange(size=(32, 16))]
    aug = CrossModalAugment(vis, ReIDTransform.caj_thermal(size=(32, 16)), ModalityAugment(p=1.0), generator=3)
    v = batch(5, 3, 32, 16, torch.uint8, seed=16)
    t = batch(5, 3, 32, 16, torch.uint8, seed=17)
    v0, v1, th = aug(v, t)
    prm = aug._params
    # by hand: pre of every view, MAG on (first visible view, thermal), post of every view
    pv = [view.pre(v, p) for view, p in zip(vis, prm["visible"])]
    pt = aug.thermal.pre(t, prm["thermal"])
    mv, mt = modality_exchange(pv[0], pt, prm["mag"]["boxes"], prm["mag"]["batch_prob"])
    assert torch.equal(v0, vis[0].post(mv, prm["visible"][0]))
    assert torch.equal(v1, vis[1].post(pv[1], prm["visible"][1]))
    assert torch.equal(th, aug.thermal.post(mt, prm["thermal"]))
    assert bool(prm["mag"]["batch_prob"].all())
    again = aug(v, t, params=prm)
    assert all(torch.equal(a, b) for a, b in zip((v0, v1, th), again))
    fresh = CrossModalAugment(vis, ReIDTransform.caj_thermal(size=(32, 16)), ModalityAugment(p=1.0), generator=3)
    assert all(torch.equal(a, b) for a, b in zip((v0, v1, th), fresh(v, t)))


def test_one_channel_thermal_and_no_mag():
    aug = CrossModalAugment(ReIDTransform.agw(size=(24, 12)), ReIDTransform.caj_visible(size=(24, 12)), generator=0)
    v, t = aug(batch(3, 3, 24, 12, seed=18), batch(3, 1, 24, 12, seed=19))
    assert v.shape == (3, 3, 24, 12) and t.shape == (3, 1, 24, 12) and "mag" not in aug._params


@pytest.mark.parametrize("call,message", [
    (lambda: sample_crop_flip_params(2, 10, 10, (40, 10), padding=2), "cannot crop"),
    (lambda: ReIDTransform(channel="swap"), "channel must be"),
    (lambda: ReIDTransform(erase_p=1.5), "erase_p"),
    (lambda: ReIDTransform(jitter={"gamma": 0.1}), "unknown jitter"),
    (lambda: ReIDTransform(jitter={"hue": 0.7}), "hue"),
    (lambda: ReIDTransform.caj_thermal()(torch.zeros(2, 1, 288, 144)), "3-channel"),
    (lambda: channel_mix(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long)), "3-channel"),
    (lambda: ReIDTransform()(torch.zeros(2, 3, 8, 8, dtype=torch.int32)), "float or uint8"),
    (lambda: CrossModalAugment(ReIDTransform(size=(8, 4)), ReIDTransform(size=(8, 8)), ModalityAugment()), "one crop size"),
    (lambda: CrossModalAugment(ReIDTransform(size=(8, 4)), ReIDTransform(size=(8, 4)))(
        torch.zeros(2, 3, 8, 4), torch.zeros(3, 3, 8, 4)), "aligned pairs"),
    (lambda: ReIDTransform(generator="seed"), "generator"),
])
def test_bad_inputs_raise_user_errors(call, message):
    with pytest.raises(UserError, match=message):
        call()


@pytest.mark.gpu
def test_cuda_pipeline_is_sync_free_and_matches_cpu():
    vis = [ReIDTransform.caj_visible(), ReIDTransform.caj_visible_exchange()]
    aug = CrossModalAugment(vis, ReIDTransform.caj_thermal(), ModalityAugment(p=0.5), generator=0)
    v = batch(16, 3, 288, 144, torch.uint8, seed=21).cuda()
    t = batch(16, 3, 288, 144, torch.uint8, seed=22).cuda()
    aug(v, t)  # warm-up (lazy generator, kernels)
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = aug(v, t)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    prm = aug._params

    def to_cpu(obj):
        if isinstance(obj, torch.Tensor):
            assert obj.device.type == "cuda"
            return obj.cpu()
        if isinstance(obj, dict):
            return {k: to_cpu(x) for k, x in obj.items()}
        return [to_cpu(x) for x in obj]

    cpu = aug(v.cpu(), t.cpu(), params=to_cpu(prm))
    for a, b in zip(out, cpu):
        assert torch.allclose(a.cpu(), b, atol=1e-5)


@pytest.mark.slow
def test_torch_compile_fullgraph_of_the_functional_core():
    def step(x, g_off, g_flip, boxes, apply, code):
        y = crop_flip(x, g_off, g_flip, (32, 16), 10)
        y = random_erase(normalize(y), boxes, apply)
        return channel_mix(y, code)

    x = batch(4, 3, 32, 16, torch.uint8, seed=20)
    cf = sample_crop_flip_params(4, 32, 16, (32, 16), generator=gen(0))
    er = sample_erasing_params(4, 32, 16, p=1.0, generator=gen(1))
    code = sample_channel_params(4, "adaptive_gray", generator=gen(2))["code"]
    args = (x, cf["offset"], cf["flip"], er["boxes"], er["batch_prob"], code)
    compiled = torch.compile(step, fullgraph=True, dynamic=False)
    assert torch.allclose(compiled(*args), step(*args), atol=1e-6)
