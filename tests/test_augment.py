"""Tests for mag_mmt.augment (MAG, docs/method.md#mag-sampling-law) and mag_mmt.visualize."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mag_mmt import ModalityAugment, StackedModalityAugment
from mag_mmt.errors import UserError
from mag_mmt.functional import exchange_mask, match_partners, modality_exchange, sample_exchange_params
from tests.reference_augment import changed_rectangle, ks_uniform, reference_box, reference_exchange


def distinct_pair(b: int, c: int, h: int, w: int, ct: int | None = None, dtype=torch.float32, seed: int = 0):
    """Visible and thermal images whose pixels differ everywhere (so every change is visible)."""
    g = torch.Generator().manual_seed(seed)
    v = torch.rand(b, c, h, w, generator=g) * 0.5
    t = torch.rand(b, ct or c, h, w, generator=g) * 0.5 + 0.5 + 1e-3
    if dtype == torch.uint8:
        return (v * 255).to(torch.uint8), (t * 255).clamp(max=255).to(torch.uint8).clamp(min=130)
    return v.to(dtype), t.to(dtype)


def as_lists(params):
    return params["boxes"].tolist(), params["batch_prob"].tolist()


# ------------------------------------------------------------------------------------------
# the exchange against the per-pair reference
# ------------------------------------------------------------------------------------------
@given(
    b=st.integers(1, 5),
    c=st.sampled_from([1, 3]),
    thermal_one_channel=st.booleans(),
    h=st.integers(1, 24),
    w=st.integers(1, 24),
    p=st.sampled_from([0.0, 0.3, 1.0]),
    dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16, torch.uint8]),
    placement=st.sampled_from(["clip", "inside"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_exchange_matches_reference(b, c, thermal_one_channel, h, w, p, dtype, placement, seed):
    v, t = distinct_pair(b, c, h, w, 1 if thermal_one_channel else c, dtype, seed)
    aug = ModalityAugment(p=p, placement=placement, generator=seed)
    v2, t2 = aug(v, t)
    boxes, apply = as_lists(aug._params)
    rv, rt = reference_exchange(v, t, boxes, apply)
    assert v2.dtype == dtype and t2.dtype == dtype
    assert v2.shape == (b, c, h, w) and t2.shape == (b, c, h, w)
    assert torch.equal(v2, rv) and torch.equal(t2, rt)


@given(
    h=st.integers(1, 300),
    w=st.integers(1, 300),
    lo=st.floats(0.0, 1.0),
    span=st.floats(0.0, 1.0),
    rlo=st.floats(0.05, 5.0),
    rspan=st.floats(0.0, 5.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_boxes_follow_spec_formula(h, w, lo, span, rlo, rspan, seed):
    scale, ratio = (lo, min(1.0, lo + span)), (rlo, rlo + rspan)
    g = torch.Generator().manual_seed(seed)
    prm = sample_exchange_params(16, h, w, p=1.0, scale=scale, ratio=ratio, generator=g)
    area, r = prm["area"].tolist(), prm["ratio"].tolist()
    for k, ((yc, xc), box) in enumerate(zip(prm["center"].tolist(), prm["boxes"].tolist())):
        assert 0 <= yc < h and 0 <= xc < w
        assert scale[0] - 1e-6 <= area[k] <= scale[1] + 1e-6
        assert ratio[0] * (1 - 1e-6) <= r[k] <= ratio[1] * (1 + 1e-6)
        assert tuple(box) == reference_box(area[k], r[k], yc, xc, h, w)
        x1, y1, x2, y2 = box
        assert x1 <= xc < x2 and y1 <= yc < y2  # never empty: the centre pixel is inside


@given(h=st.integers(1, 64), w=st.integers(1, 64), seed=st.integers(0, 10_000),
       scale_hi=st.floats(0.0, 1.0), ratio_hi=st.floats(0.1, 10.0))
def test_inside_placement_keeps_box_in_image(h, w, seed, scale_hi, ratio_hi):
    g = torch.Generator().manual_seed(seed)
    prm = sample_exchange_params(32, h, w, p=1.0, scale=(0.0, scale_hi), ratio=(0.1, max(0.1, ratio_hi)),
                                 placement="inside", generator=g)
    size = prm["size"].clamp(min=1)
    x1, y1, x2, y2 = prm["boxes"].unbind(1)
    assert bool((x1 >= 0).all() and (y1 >= 0).all() and (x2 <= w).all() and (y2 <= h).all())
    assert torch.equal(y2 - y1, size[:, 0].clamp(max=h)) and torch.equal(x2 - x1, size[:, 1].clamp(max=w))


def test_mask_agrees_with_kornia_bbox_to_mask():
    from kornia.geometry.bbox import bbox_generator, bbox_to_mask

    prm = sample_exchange_params(64, 37, 23, p=1.0, generator=torch.Generator().manual_seed(3))
    x1, y1, x2, y2 = prm["boxes"].unbind(1)
    kboxes = bbox_generator(x1.float(), y1.float(), (x2 - x1).float(), (y2 - y1).float())
    expected = bbox_to_mask(kboxes, 23, 37) == 1
    assert torch.equal(exchange_mask(prm["boxes"], 37, 23)[:, 0], expected)
    off = torch.zeros(64, dtype=torch.bool)
    assert not exchange_mask(prm["boxes"], 37, 23, off).any()


# ------------------------------------------------------------------------------------------
# properties of the output
# ------------------------------------------------------------------------------------------
@given(b=st.integers(1, 4), h=st.integers(2, 20), w=st.integers(2, 20), seed=st.integers(0, 10_000),
       p=st.sampled_from([0.5, 1.0]))
def test_pixels_come_from_the_pair_and_one_shared_rectangle(b, h, w, seed, p):
    v, t = distinct_pair(b, 3, h, w, seed=seed)
    aug = ModalityAugment(p=p, generator=seed)
    v2, t2 = aug(v, t)
    assert bool(((v2 == v) | (v2 == t)).all()) and bool(((t2 == t) | (t2 == v)).all())
    assert torch.equal(v2 == t, t2 == v)  # the same positions were exchanged both ways
    s = h * w
    for i in range(b):
        rect_v, rect_t = changed_rectangle(v[i], v2[i]), changed_rectangle(t[i], t2[i])
        assert rect_v == rect_t
        applied = bool(aug._params["batch_prob"][i])
        assert (rect_v is not None) == applied
        if p == 1.0:
            assert rect_v is not None
        if rect_v is not None:
            x1, y1, x2, y2 = rect_v
            a, r = float(aug._params["area"][i]), float(aug._params["ratio"][i])
            he, we = math.sqrt(s * a * r), math.sqrt(s * a / r)
            # clipped area never exceeds the rounded target box
            assert (x2 - x1) * (y2 - y1) <= max(1.0, (he + 0.5)) * max(1.0, (we + 0.5))


def test_area_fraction_respects_bounds():
    prm = sample_exchange_params(4000, 288, 144, p=1.0, generator=torch.Generator().manual_seed(1))
    h, w = prm["size"].unbind(1)
    s = 288 * 144
    frac = (h * w).double() / s
    he = torch.sqrt(prm["area"].double() * s * prm["ratio"].double())
    we = torch.sqrt(prm["area"].double() * s / prm["ratio"].double())
    slack = (0.5 * (he + we) + 0.25) / s  # rounding h and w to whole pixels
    assert bool((frac >= 0.02 - slack).all() and (frac <= 0.4 + slack).all())
    x1, y1, x2, y2 = prm["boxes"].unbind(1)
    clipped = ((x2 - x1) * (y2 - y1)).double() / s
    assert bool((clipped <= frac + 1e-12).all() and (clipped > 0).all())
    # the inside placement keeps the sampled area whenever the box fits
    prm = sample_exchange_params(4000, 288, 144, p=1.0, placement="inside", generator=torch.Generator().manual_seed(1))
    fits = (prm["size"][:, 0] <= 288) & (prm["size"][:, 1] <= 144)
    x1, y1, x2, y2 = prm["boxes"].unbind(1)
    assert torch.equal(((x2 - x1) * (y2 - y1))[fits], (prm["size"][:, 0] * prm["size"][:, 1])[fits])


def test_sampling_distributions():
    """Area and ratio follow the documented laws (KS test, alpha = 0.001, fixed seed)."""
    n = 20_000
    crit = 1.95 / math.sqrt(n)
    g = torch.Generator().manual_seed(1234)
    prm = sample_exchange_params(n, 288, 144, p=0.5, generator=g)
    assert ks_uniform(prm["area"].numpy(), 0.02, 0.4) < crit
    assert ks_uniform(prm["ratio"].numpy(), 0.3, 3.3) < crit
    assert ks_uniform(prm["center"][:, 0].numpy() + 0.5, 0, 288) < crit + 1 / 288
    assert ks_uniform(prm["center"][:, 1].numpy() + 0.5, 0, 144) < crit + 1 / 144
    assert abs(prm["batch_prob"].double().mean().item() - 0.5) < 4 * math.sqrt(0.25 / n)
    # the realised box (before clipping) has the sampled shape: h / w ~ r, h w ~ A S
    big = sample_exchange_params(n, 4000, 4000, p=1.0, scale=(0.02, 0.4), generator=g)
    h, w = big["size"].double().unbind(1)
    assert torch.allclose(h / w, big["ratio"].double(), rtol=0.02)
    assert torch.allclose(h * w / 4000**2, big["area"].double(), rtol=0.02)
    # log-uniform ratio (torchvision / timm): log r uniform, half the mass below 1 at (1/3, 3)
    logr = sample_exchange_params(n, 64, 64, ratio=(1 / 3, 3.0), ratio_sampling="log_uniform", generator=g)["ratio"]
    assert ks_uniform(np.log(logr.numpy()), math.log(1 / 3), math.log(3.0)) < crit
    # and a wrong law is rejected by the same test (the test has power)
    assert ks_uniform(logr.numpy(), 1 / 3, 3.0) > 10 * crit


def test_p_zero_is_identity_and_p_one_changes_every_pair():
    for dtype in (torch.float32, torch.uint8):
        v, t = distinct_pair(16, 3, 32, 16, dtype=dtype)
        v0, t0 = ModalityAugment(p=0.0)(v, t)
        assert torch.equal(v0, v) and torch.equal(t0, t)
        v1, t1 = ModalityAugment(p=1.0, scale=(0.0, 0.0))(v, t)  # even a zero area gives a 1x1 box
        assert bool((v1 != v).flatten(1).any(1).all()) and bool((t1 != t).flatten(1).any(1).all())
        assert int((v1 != v).any(1).sum()) == 16


def test_replay_and_seeds():
    v, t = distinct_pair(8, 3, 40, 20)
    aug = ModalityAugment(p=0.5, generator=7)
    v2, t2 = aug(v, t)
    saved = aug._params
    v3, t3 = aug(v, t, params=saved)
    assert torch.equal(v2, v3) and torch.equal(t2, t3)
    assert aug._params is saved
    again = ModalityAugment(p=0.5, generator=7)(v, t)
    assert torch.equal(again[0], v2) and torch.equal(again[1], t2)
    other = ModalityAugment(p=1.0, generator=8)
    other(v, t)
    assert not torch.equal(other._params["boxes"], saved["boxes"])
    gen = torch.Generator().manual_seed(7)
    viagen = ModalityAugment(p=0.5, generator=gen)(v, t)
    assert torch.equal(viagen[0], v2)
    # same_on_batch: one box and one decision for the whole batch
    same = ModalityAugment(p=1.0, same_on_batch=True, generator=1)
    same(v, t)
    assert bool((same._params["boxes"] == same._params["boxes"][:1]).all())


def test_public_replay_api_draws_then_applies():
    """``forward_parameters`` draws exactly what a call would draw (same generator stream);
    ``params=`` applies them; the kornia shape form draws the same aligned boxes."""
    v, t = distinct_pair(8, 3, 40, 20)
    labels_v, labels_t = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]), torch.tensor([1, 0, 3, 2, 2, 0, 1, 4])
    for kwargs in ({}, {"visible_labels": labels_v, "thermal_labels": labels_t}):
        drawn = ModalityAugment(p=0.6, generator=11)
        params = drawn.forward_parameters(v, t, **kwargs)
        out = drawn(v, t, **kwargs, params=params)
        called = ModalityAugment(p=0.6, generator=11)
        direct = called(v, t, **kwargs)
        assert torch.equal(out[0], direct[0]) and torch.equal(out[1], direct[1])
        assert params.keys() == called._params.keys()
        assert all(torch.equal(params[k], called._params[k]) for k in params)
        replay = called(v, t, **kwargs, params=called._params)  # kornia's name replays the last call
        assert torch.equal(replay[0], direct[0]) and torch.equal(replay[1], direct[1])
    by_shape = ModalityAugment(p=0.6, generator=11).forward_parameters(v.shape)
    by_tensor = ModalityAugment(p=0.6, generator=11).forward_parameters(v, t)
    assert all(torch.equal(by_shape[k], by_tensor[k]) for k in by_tensor)
    with pytest.raises(ValueError, match="batch shape"):
        ModalityAugment().forward_parameters((8, 40, 20))
    with pytest.raises(ValueError, match="thermal batch"):
        ModalityAugment().forward_parameters(v)
    with pytest.raises(UserError, match="drawn without labels"):  # labels would be ignored: refused
        ModalityAugment()(v, t, labels_v, labels_t, params=by_tensor)
    assert not hasattr(ModalityAugment(p=0.3), "p_pair") and ModalityAugment(p=0.3).p == 0.3


# ------------------------------------------------------------------------------------------
# label-aware partners
# ------------------------------------------------------------------------------------------
@given(
    lv=st.lists(st.integers(0, 4), min_size=1, max_size=10),
    lt=st.lists(st.integers(0, 4), min_size=1, max_size=10),
    seed=st.integers(0, 10_000),
    dtype=st.sampled_from([torch.float32, torch.uint8]),
)
def test_label_partners_never_cross_identities(lv, lt, seed, dtype):
    lv_t, lt_t = torch.tensor(lv), torch.tensor(lt)
    vp, tp = match_partners(lv_t, lt_t, generator=torch.Generator().manual_seed(seed))
    vp, tp = vp.tolist(), tp.tolist()
    for i, j in enumerate(vp):
        assert (j >= 0) == (lv[i] in lt)
        if j >= 0:
            assert lt[j] == lv[i]
    for j, i in enumerate(tp):
        assert (i >= 0) == (lt[j] in lv)
        if i >= 0:
            assert lv[i] == lt[j]
    # within an identity, min(nv, nt) pairs are mutual
    for label in set(lv) & set(lt):
        mutual = sum(1 for i, j in enumerate(vp) if lv[i] == label and j >= 0 and tp[j] == i)
        assert mutual == min(lv.count(label), lt.count(label))
    if lv == lt:
        assert vp == list(range(len(lv))) and tp == list(range(len(lt)))

    v = distinct_pair(len(lv), 3, 12, 10, dtype=dtype, seed=seed)[0]
    t = distinct_pair(len(lt), 3, 12, 10, ct=1, dtype=dtype, seed=seed + 1)[1]
    aug = ModalityAugment(p=0.7, generator=seed)
    v2, t2 = aug(v, t, lv_t, lt_t)
    prm = aug._params
    rv, rt = reference_exchange(
        v, t, prm["boxes"].tolist(), prm["batch_prob"].tolist(),
        thermal_boxes=prm["thermal_boxes"].tolist(), thermal_apply=prm["thermal_batch_prob"].tolist(),
        visible_partner=prm["visible_partner"].tolist(), thermal_partner=prm["thermal_partner"].tolist(),
    )
    assert torch.equal(v2, rv) and torch.equal(t2, rt)
    vp, tp = prm["visible_partner"].tolist(), prm["thermal_partner"].tolist()
    for j, i in enumerate(tp):  # a mutual pair exchanges the same box both ways
        if i >= 0 and vp[i] == j:
            assert prm["thermal_boxes"][j].tolist() == prm["boxes"][i].tolist()
            assert bool(prm["thermal_batch_prob"][j]) == bool(prm["batch_prob"][i])
    for i, j in enumerate(vp):
        if j < 0:
            assert torch.equal(v2[i], v[i])
    replay = aug(v, t, params=prm)
    assert torch.equal(replay[0], v2) and torch.equal(replay[1], t2)


def test_aligned_labels_match_the_unlabelled_path():
    v, t = distinct_pair(6, 3, 16, 8)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    a, b = ModalityAugment(p=1.0, generator=3), ModalityAugment(p=1.0, generator=3)
    with_labels = a(v, t, labels, labels)
    without = b(v, t)
    assert torch.equal(a._params["boxes"], b._params["boxes"])
    assert torch.equal(with_labels[0], without[0]) and torch.equal(with_labels[1], without[1])


# ------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "visible, thermal, kwargs, message",
    [
        (torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 6), {}, "spatial size"),
        (torch.rand(2, 3, 8, 8), torch.rand(3, 3, 8, 8), {}, "same batch size"),
        (torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8).double(), {}, "one dtype"),
        (torch.rand(2, 3, 8, 8), torch.rand(2, 2, 8, 8), {}, "channels"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.int32), torch.zeros(2, 3, 8, 8, dtype=torch.int32), {}, "uint8"),
        (torch.rand(3, 8, 8), torch.rand(3, 8, 8), {}, "4 dimensions"),
        (torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8), {"visible_labels": torch.tensor([0, 1])}, "both"),
        (torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8),
         {"visible_labels": torch.tensor([0, 1, 2]), "thermal_labels": torch.tensor([0, 1])}, "one label per image"),
        (torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8),
         {"visible_labels": torch.tensor([0.0, 1.0]), "thermal_labels": torch.tensor([0, 1])}, "integer"),
    ],
)
def test_bad_inputs(visible, thermal, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModalityAugment(p=1.0)(visible, thermal, **kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"p": 1.5}, "p must"), ({"scale": (0.5, 0.1)}, "scale"), ({"scale": (0.1, 1.5)}, "scale"),
     ({"ratio": (0.0, 1.0)}, "ratio"), ({"ratio_sampling": "normal"}, "ratio_sampling"),
     ({"placement": "wrap"}, "placement"), ({"generator": "seed"}, "generator")],
)
def test_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModalityAugment(**kwargs)


def test_functional_argument_errors():
    v, t = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"shape \(2, 4\)"):
        modality_exchange(v, t, torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        modality_exchange(v, t, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="both"):
        modality_exchange(v, t, torch.zeros(2, 4, dtype=torch.long), visible_partner=torch.arange(2))


# ------------------------------------------------------------------------------------------
# kornia stacked form, compile, devices
# ------------------------------------------------------------------------------------------
def test_stacked_form_matches_and_fits_augmentation_sequential():
    import kornia.augmentation as K

    v, t = distinct_pair(4, 3, 32, 16)
    stacked_aug = ModalityAugment.stacked(p=0.5)
    assert isinstance(stacked_aug, StackedModalityAugment)
    torch.manual_seed(0)
    out = stacked_aug(torch.cat([v, t]))
    prm = stacked_aug._params
    assert prm["batch_prob"].shape == (8,)
    rv, rt = reference_exchange(v, t, prm["boxes"].tolist(), (prm["batch_prob"][:4] > 0.5).tolist())
    assert torch.equal(out, torch.cat([rv, rt]))
    seq = K.AugmentationSequential(StackedModalityAugment(p=1.0), K.RandomHorizontalFlip(p=1.0))
    x = torch.cat([v, t])
    y = seq(x)
    assert torch.equal(y, seq(x, params=seq._params))
    flipped = y.flip(-1)
    assert bool(((flipped == x) | (flipped == torch.cat([t, v]))).all()) and not torch.equal(flipped, x)
    with pytest.raises(ValueError, match="2B"):
        StackedModalityAugment(p=1.0)(torch.rand(3, 3, 8, 8))


@pytest.mark.parametrize("seed", range(4))
def test_stacked_form_with_p_below_one_in_augmentation_sequential(seed):
    """p < 1 inside AugmentationSequential, on whichever kornia is installed (the floors
    script runs this on the lowest declared kornia too)."""
    import kornia.augmentation as K

    v, t = distinct_pair(6, 3, 32, 16)
    seq = K.AugmentationSequential(StackedModalityAugment(p=0.5))
    torch.manual_seed(seed)
    y = seq(torch.cat([v, t]))
    prm = seq._params[0].data
    apply = (prm["batch_prob"][:6] > 0.5).tolist()
    rv, rt = reference_exchange(v, t, prm["boxes"].tolist(), apply)
    assert torch.equal(y, torch.cat([rv, rt]))


def test_stacked_apply_transform_takes_only_the_applied_rows():
    """kornia < 0.9 passes apply_transform only the rows whose flag is set (some, not all): the
    applied pairs' visible rows, then their thermal rows; params still cover every pair."""
    v, t = distinct_pair(5, 3, 32, 16)
    aug = StackedModalityAugment(p=1.0)
    x = torch.cat([v, t])
    prm = aug.forward_parameters(x.shape)
    prm["batch_prob"] = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0] * 2)
    rows = (prm["batch_prob"] > 0.5).nonzero().flatten()
    out = aug.apply_transform(x[rows], prm, {})
    full = aug.apply_transform(x, prm, {})
    assert torch.equal(out, full[rows])
    rv, rt = reference_exchange(v, t, prm["boxes"].tolist(), [True, False, True, True, False])
    assert torch.equal(full, torch.cat([rv, rt]))
    with pytest.raises(ValueError, match="does not match params for 5 pairs"):
        aug.apply_transform(x[:4], prm, {})


@pytest.mark.slow
def test_torch_compile_fullgraph_sampling_and_apply():
    def step(v, t):
        prm = sample_exchange_params(v.shape[0], v.shape[-2], v.shape[-1], p=1.0, device=v.device)
        v2, t2 = modality_exchange(v, t, prm["boxes"], prm["batch_prob"])
        return v2, t2, prm["boxes"]

    compiled = torch.compile(step, fullgraph=True, dynamic=False)
    v, t = distinct_pair(4, 3, 16, 8)
    v2, t2, boxes = compiled(v, t)
    ev, et = modality_exchange(v, t, boxes, torch.ones(4, dtype=torch.bool))
    assert torch.equal(v2, ev) and torch.equal(t2, et)
    assert bool((v2 != v).flatten(1).any(1).all())


@pytest.mark.gpu
def test_cuda_params_live_on_the_input_device():
    v, t = distinct_pair(8, 3, 32, 16)
    v, t = v.cuda(), t.cuda()
    aug = ModalityAugment(p=0.5, generator=0)
    v2, t2 = aug(v, t, torch.arange(8).cuda() % 3, torch.arange(8).cuda() % 4)
    assert all(x.device.type == "cuda" for x in aug._params.values())
    prm = {k: x.cpu() for k, x in aug._params.items()}
    rv, rt = reference_exchange(
        v.cpu(), t.cpu(), prm["boxes"].tolist(), prm["batch_prob"].tolist(),
        thermal_boxes=prm["thermal_boxes"].tolist(), thermal_apply=prm["thermal_batch_prob"].tolist(),
        visible_partner=prm["visible_partner"].tolist(), thermal_partner=prm["thermal_partner"].tolist())
    assert torch.equal(v2.cpu(), rv) and torch.equal(t2.cpu(), rt)


def test_generator_device_mismatch_is_an_error():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA to build a mismatched generator")
    aug = ModalityAugment(generator=torch.Generator(device="cuda"))
    with pytest.raises(ValueError, match="generator"):
        aug(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8))


def test_gradients_flow_through_the_exchange():
    v = torch.rand(2, 3, 8, 8, requires_grad=True)
    t = torch.rand(2, 3, 8, 8, requires_grad=True)
    aug = ModalityAugment(p=1.0, generator=0)
    v2, t2 = aug(v, t)
    v2.sum().backward()
    mask = exchange_mask(aug._params["boxes"], 8, 8).expand(2, 3, 8, 8)
    assert torch.equal(t.grad, mask.float()) and torch.equal(v.grad, (~mask).float())


# ------------------------------------------------------------------------------------------
# picture
# ------------------------------------------------------------------------------------------
def test_save_augmentation_grid(tmp_path):
    from PIL import Image

    from mag_mmt.visualize import save_augmentation_grid

    v, t = distinct_pair(10, 3, 32, 16, ct=1)
    aug = ModalityAugment(p=1.0, generator=0)
    v2, t2 = aug(v, t)
    path = save_augmentation_grid(tmp_path / "grid.png", v, t, v2, t2, max_rows=4)
    img = Image.open(path)
    assert img.mode == "RGB"
    width, height = img.size
    assert width >= 4 * 16 and height >= 4 * 32
    with pytest.raises(ValueError, match="same number"):
        save_augmentation_grid(tmp_path / "bad.png", v, t[:3], v2, t2)
