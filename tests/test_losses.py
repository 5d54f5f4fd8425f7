"""Tests of the MMT loss, its baselines and the distance helpers (single process)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mag_mmt
from mag_mmt.functional import (
    MMTOutput,
    batch_hard_triplet_loss,
    concat_modalities,
    masked_hard_mining,
    multi_masking_triplet_loss,
    paired_distance,
    pairwise_distance,
    weighted_regularized_triplet_loss,
)
from mag_mmt.losses import BatchHardTripletLoss, MultiMaskingTripletLoss, WeightedRegularizedTripletLoss

from tests.host_sync import host_syncs
from tests.reference_losses import numpy_batch_hard, reference_mmt, reference_wrt


def _close(a, b, tol=1e-4):
    torch.testing.assert_close(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64),
                               rtol=tol, atol=tol)


# ----------------------------------------------------------------------------- batches

@st.composite
def batches(draw, max_n=12):
    """Ragged cross-modality batches: any size (0 included), few identities (negative ones
    too), modalities drawn per row (one-modality batches, missing partners, singletons)."""
    n = draw(st.integers(0, max_n))
    d = draw(st.integers(1, 5))
    n_ids = draw(st.integers(1, 4))
    labels = draw(st.lists(st.integers(-1, n_ids - 2), min_size=n, max_size=n))
    mods = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([0.1, 1.0, 10.0]))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * scale
    return x, torch.tensor(labels, dtype=torch.int64), torch.tensor(mods, dtype=torch.int64)


configs = st.fixed_dictionaries({
    "margin": st.sampled_from([0.0, 0.3, 1.5]),
    "pos_margin": st.sampled_from([0.0, 0.1, 0.5]),
    "pos_weight": st.sampled_from([0.0, 0.5, 1.0]),
    "mman_weight": st.sampled_from([0.0, 0.5, 1.0]),
    "positive_modality": st.sampled_from(["cross", "same", "any"]),
    "negative_modality": st.sampled_from(["cross", "same", "any"]),
    "anchors": st.sampled_from(["both", "visible", "thermal"]),
    "distance": st.sampled_from(["euclidean", "sqeuclidean", "cosine"]),
    "normalize": st.booleans(),
    "reduction": st.sampled_from(["mean", "sum", "none"]),
})


def pk_batch(p=4, k=2, d=16, seed=0, dtype=torch.float32):
    """The paper's sampler layout: P identities x (K visible + K thermal)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(p).repeat_interleave(2 * k)
    mods = torch.tensor([0] * k + [1] * k).repeat(p)
    x = torch.randn(p * 2 * k, d, generator=g).to(dtype)
    return x, labels, mods


# ----------------------------------------------------------------------------- against the reference

@given(batch=batches(), cfg=configs, dtype=st.sampled_from([torch.float32, torch.float64]))
def test_equals_reference(batch, cfg, dtype):
    x, y, m = batch
    x = x.to(dtype)
    out = multi_masking_triplet_loss(x, y, m, return_parts=True, **cfg)
    ref = reference_mmt(x.double(), y.tolist(), m.tolist(), **cfg)
    tol = 1e-4 if dtype == torch.float32 else 1e-6
    if cfg["distance"] == "sqeuclidean":
        tol *= 100  # scale 10 data: squared distances ~ 1e3
    _close(out.loss, ref[0], tol)
    _close(out.mman, ref[1], tol)
    _close(out.mmap, ref[2], tol)
    assert int(out.num_valid) == ref[3]
    assert out.num_valid.dtype == torch.int64
    assert out.loss.shape == ((x.shape[0],) if cfg["reduction"] == "none" else ())


@given(batch=batches(), cfg=configs, n_ref=st.integers(0, 8), seed=st.integers(0, 1000))
def test_reference_set_equals_reference(batch, cfg, n_ref, seed):
    """pytorch-metric-learning convention: anchors vs a separate reference set."""
    x, y, m = batch
    g = torch.Generator().manual_seed(seed)
    rx = torch.randn(n_ref, x.shape[1], generator=g, dtype=torch.float64)
    ry = torch.randint(-1, 3, (n_ref,), generator=g)
    rm = torch.randint(0, 2, (n_ref,), generator=g)
    out = multi_masking_triplet_loss(x, y, m, ref_emb=rx, ref_labels=ry, ref_modalities=rm,
                                     return_parts=True, **cfg)
    ref = reference_mmt(x, y.tolist(), m.tolist(), ref_emb=rx, ref_labels=ry.tolist(),
                        ref_modalities=rm.tolist(), **cfg)
    _close(out.loss, ref[0], 1e-6)
    assert int(out.num_valid) == ref[3]


EXTREME_LABELS = [2**62, -(2**62), 2**63 - 1, -(2**63), 0, 1, -1]


@given(batch=batches(), cfg=configs, ids=st.permutations(EXTREME_LABELS))
@settings(max_examples=40)
def test_labels_near_the_int64_limits_equal_reference(batch, cfg, ids):
    """Any integers are identities: labels near +-2^63 are neither merged nor wrapped."""
    x, y, m = batch
    y = torch.tensor([ids[v + 1] for v in y.tolist()], dtype=torch.int64)
    out = multi_masking_triplet_loss(x, y, m, return_parts=True, **cfg)
    ref = reference_mmt(x, y.tolist(), m.tolist(), **cfg)
    _close(out.loss, ref[0], 1e-6)
    assert int(out.num_valid) == ref[3]


def test_labels_two_to_the_62_apart_are_not_positives():
    # 2 * 2^62 and 2 * -2^62 both wrap to -2^63: a combined label-modality key merges them
    x = torch.tensor([[0.0], [1.0], [5.0], [6.0]])
    y = torch.tensor([2**62, -(2**62), 3, 3])
    m = torch.tensor([0, 1, 0, 1])
    out = multi_masking_triplet_loss(x, y, m, margin=1.0, reduction="none", return_parts=True)
    assert out.num_valid.tolist() == 2  # only the two rows of identity 3 have a positive
    assert out.loss[:2].tolist() == [0.0, 0.0]
    mined = masked_hard_mining(pairwise_distance(x), y, m, y, m)
    assert mined.has_positive.tolist() == [False, False, True, True]
    for pm in ("same", "any"):
        mined = masked_hard_mining(pairwise_distance(x), y, m, y, m, positive_modality=pm,
                                   anchor_index=torch.arange(4))
        assert mined.has_positive.tolist() == [False, False, pm == "any", pm == "any"]


@given(batch=batches(), cfg=configs)
@settings(max_examples=40)
def test_reference_set_that_is_the_batch_excludes_self_pairs(batch, cfg):
    """PML's ``ref_emb=embeddings``: the same tensors as the reference set give the loss of the
    batch alone (a row is never its own positive), values and gradients."""
    x, y, m = batch
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    alone = multi_masking_triplet_loss(x1, y, m, return_parts=True, **cfg)
    as_ref = multi_masking_triplet_loss(x2, y, m, ref_emb=x2, ref_labels=y, ref_modalities=m,
                                        return_parts=True, **cfg)
    for a, b in zip(alone, as_ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    ref = reference_mmt(x, y.tolist(), m.tolist(), ref_emb=x, ref_labels=y.tolist(),
                        ref_modalities=m.tolist(), **cfg)
    _close(as_ref.loss, ref[0], 1e-6)
    assert int(as_ref.num_valid) == ref[3]
    if cfg["reduction"] != "none" and as_ref.loss.requires_grad:
        alone.loss.backward()
        as_ref.loss.backward()
        torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("positive_modality", ["same", "any"])
def test_reference_set_that_is_the_batch_is_recognised_by_memory(positive_modality):
    x, y, m = pk_batch(p=3, k=2, d=4, seed=1)
    kw = dict(margin=1.0, positive_modality=positive_modality, reduction="none")
    alone = multi_masking_triplet_loss(x, y, m, **kw)
    view = x.view(x.shape)  # another object, the same memory, shape and strides
    assert view is not x
    torch.testing.assert_close(multi_masking_triplet_loss(x, y, m, ref_emb=view, ref_labels=y,
                                                          ref_modalities=m, **kw), alone)
    crit = MultiMaskingTripletLoss(**kw)
    torch.testing.assert_close(crit(x, y, m, ref_emb=x, ref_labels=y, ref_modalities=m), alone)
    # a copy is another reference set: each row then meets its twin at distance ~0
    copy = multi_masking_triplet_loss(x, y, m, ref_emb=x.clone(), ref_labels=y, ref_modalities=m, **kw)
    ref = reference_mmt(x, y, m, ref_emb=x.clone(), ref_labels=y, ref_modalities=m, **kw)[0]
    _close(copy, ref, 1e-5)
    assert not torch.allclose(copy, alone)
    # a view of other rows (same start, other shape) is not the batch
    part = multi_masking_triplet_loss(x, y, m, ref_emb=x[:6], ref_labels=y[:6], ref_modalities=m[:6], **kw)
    _close(part, reference_mmt(x, y, m, ref_emb=x[:6].clone(), ref_labels=y[:6], ref_modalities=m[:6],
                               **kw)[0], 1e-5)


@pytest.mark.parametrize("positive_modality", ["cross", "same", "any"])
def test_detached_batch_as_reference_set_passes_no_gradient_through_the_references(positive_modality):
    """``ref_emb=embeddings.detach()`` (stop-gradient references): self-pairs are still excluded,
    but gradients reach the rows only as anchors, as with any detached reference set."""
    x, y, m = pk_batch(p=3, k=2, d=4, seed=2)
    kw = dict(margin=1.0, positive_modality=positive_modality)
    a = x.clone().requires_grad_(True)
    loss = multi_masking_triplet_loss(a, y, m, ref_emb=a.detach(), ref_labels=y, ref_modalities=m, **kw)
    loss.backward()
    alone = multi_masking_triplet_loss(x, y, m, **kw)
    torch.testing.assert_close(loss.detach(), alone)  # the same pairs as without a reference set
    b = x.clone().requires_grad_(True)
    ref = reference_mmt(b, y, m, ref_emb=x.clone(), ref_labels=y, ref_modalities=m, **kw)[0]
    if positive_modality == "cross":  # no self-pair possible: equal to a detached copy as references
        ref.backward()
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6)
    c = x.clone().requires_grad_(True)
    multi_masking_triplet_loss(c, y, m, **kw).backward()  # references with gradient
    assert not torch.allclose(a.grad, c.grad)


@pytest.mark.parametrize("weights, expect", [
    ({}, lambda o: o.mman + o.mmap),
    ({"pos_weight": 0.0}, lambda o: o.mman),  # MMAN alone (MMTN)
    ({"mman_weight": 0.0}, lambda o: o.mmap),  # MMAP alone (MMTP)
    ({"mman_weight": 0.25, "pos_weight": 2.0}, lambda o: 0.25 * o.mman + 2.0 * o.mmap),
    ({"mman_weight": 0.0, "pos_weight": 0.0}, lambda o: 0.0 * o.mman),
])
def test_term_weights_are_configurations(weights, expect):
    x, y, m = pk_batch(p=4, k=3, seed=6)
    kw = dict(margin=2.0, pos_margin=0.0, **weights)
    x1 = x.clone().requires_grad_(True)
    out = multi_masking_triplet_loss(x1, y, m, return_parts=True, **kw)
    assert float(out.mman.detach()) > 0 and float(out.mmap.detach()) > 0 and int(out.num_valid) == x.shape[0]
    _close(out.loss, expect(out), 1e-6)
    x2 = x.clone().double().requires_grad_(True)
    ref = reference_mmt(x2, y, m, **kw)
    _close(out.loss, ref[0], 1e-5)
    crit = MultiMaskingTripletLoss(**kw)
    _close(crit(x, y, m), ref[0], 1e-5)
    assert f"mman_weight={weights.get('mman_weight', 1.0)!r}" in repr(crit)
    out.loss.backward()
    if ref[0].requires_grad:
        ref[0].backward()
    _close(x1.grad, x2.grad if x2.grad is not None else torch.zeros_like(x2), 1e-5)
    if weights.get("mman_weight") == 0.0 and weights.get("pos_weight") == 0.0:
        assert not x1.grad.any()


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf"), True, "1"])
@pytest.mark.parametrize("name", ["mman_weight", "pos_weight"])
def test_bad_term_weights(name, bad):
    x, y, m = _good()
    with pytest.raises(ValueError, match=f"{name} must be a finite number >= 0"):
        multi_masking_triplet_loss(x, y, m, **{name: bad})
    with pytest.raises(ValueError, match=name):
        MultiMaskingTripletLoss(**{name: bad})


@given(batch=batches(), cfg=configs)
@settings(max_examples=25)
def test_gradients_equal_reference(batch, cfg):
    x, y, m = batch
    cfg = {**cfg, "reduction": "mean" if cfg["reduction"] == "none" else cfg["reduction"]}
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    multi_masking_triplet_loss(x1, y, m, **cfg).backward()
    ref = reference_mmt(x2, y.tolist(), m.tolist(), **cfg)[0]
    if ref.requires_grad:
        ref.backward()
    g2 = x2.grad if x2.grad is not None else torch.zeros_like(x)
    assert torch.isfinite(x1.grad).all()
    # random continuous data: no ties, so the subgradient is unique
    _close(x1.grad, g2, 1e-6)


@given(batch=batches(max_n=10), margin=st.sampled_from([0.0, 0.3, 2.0]))
def test_any_any_without_mmap_is_batch_hard(batch, margin):
    x, y, m = batch
    expected = numpy_batch_hard(x.numpy(), y.tolist(), margin)
    got = multi_masking_triplet_loss(x, y, m, margin=margin, pos_weight=0.0,
                                     positive_modality="any", negative_modality="any")
    _close(got, expected, 1e-6)
    _close(batch_hard_triplet_loss(x, y, margin=margin), expected, 1e-6)
    _close(BatchHardTripletLoss(margin=margin)(x, y, m), expected, 1e-6)


@given(batch=batches(), cfg=configs, seed=st.integers(0, 1000))
@settings(max_examples=30)
def test_permutation_invariance(batch, cfg, seed):
    x, y, m = batch
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    a = multi_masking_triplet_loss(x, y, m, **cfg)
    b = multi_masking_triplet_loss(x[perm], y[perm], m[perm], **cfg)
    _close(a[perm] if cfg["reduction"] == "none" else a, b, 1e-9)


@given(batch=batches(), shift=st.sampled_from([1.0, 1e2, 1e3]),
       distance=st.sampled_from(["euclidean", "sqeuclidean"]))
@settings(max_examples=30)
def test_translation_invariance(batch, shift, distance):
    x, y, m = batch
    x = x.float()
    t = torch.randn(1, x.shape[1]) * shift
    a = multi_masking_triplet_loss(x, y, m, distance=distance, reduction="none")
    b = multi_masking_triplet_loss(x + t, y, m, distance=distance, reduction="none")
    # float32 inputs: x + t itself rounds at ~shift * 6e-8 per coordinate
    tol = 1e-4 * max(1.0, shift / 100) * (10 if distance == "sqeuclidean" else 1)
    _close(a, b, tol)


@pytest.mark.parametrize("chunk", [1, 3, 7])
@pytest.mark.parametrize("cfg", [{}, {"positive_modality": "any", "distance": "cosine"}, {"anchors": "thermal"}])
def test_chunked_equals_unchunked(chunk, cfg):
    x, y, m = pk_batch(p=5, k=3, d=8, seed=chunk)
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    a = multi_masking_triplet_loss(x1, y, m, chunk_size=chunk, return_parts=True, **cfg)
    b = multi_masking_triplet_loss(x2, y, m, chunk_size=None, return_parts=True, **cfg)
    a.loss.backward()
    b.loss.backward()
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=0, atol=0)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=0, atol=0)


def test_auto_chunking_kicks_in(monkeypatch):
    import mag_mmt.functional.mining as L

    x, y, m = pk_batch(p=6, k=2, d=4)
    full = multi_masking_triplet_loss(x, y, m, reduction="none")
    monkeypatch.setattr(L, "AUTO_CHUNK_ELEMENTS", 30)  # 24 references -> one anchor per chunk
    calls = []
    real = L.masked_hard_mining
    monkeypatch.setattr(L, "masked_hard_mining", lambda *a, **k: calls.append(1) or real(*a, **k))
    chunked = multi_masking_triplet_loss(x, y, m, reduction="none")
    assert len(calls) == x.shape[0]
    torch.testing.assert_close(full, chunked, rtol=0, atol=0)


# ----------------------------------------------------------------------------- dtypes and numerics

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_compute_in_float32(dtype):
    x, y, m = pk_batch(p=4, k=2, d=32, dtype=dtype)
    x = x.requires_grad_(True)
    out = multi_masking_triplet_loss(x, y, m)
    assert out.dtype == torch.float32
    _close(out, reference_mmt(x.detach().double(), y, m)[0], 1e-4)
    out.backward()
    assert x.grad.dtype == dtype and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("norm", [1e3, 1e4])
def test_large_norms_in_fp16_do_not_overflow(norm):
    x, y, m = pk_batch(p=4, k=2, d=256)
    x = torch.nn.functional.normalize(x, dim=1) * norm
    x = x + 0.1 * norm / 16  # far from the origin as well
    x16 = x.half().requires_grad_(True)
    assert torch.isinf((x16.detach() ** 2).sum(1)).all()  # the naive fp16 norm would overflow
    out = multi_masking_triplet_loss(x16, y, m, return_parts=True)
    ref = reference_mmt(x16.detach().double(), y, m)
    assert torch.isfinite(out.loss)
    torch.testing.assert_close(out.loss.double(), ref[0], rtol=1e-4, atol=1e-4 * norm)
    out.loss.backward()
    assert torch.isfinite(x16.grad).all()


def test_autocast_bf16_keeps_distances_float32():
    x, y, m = pk_batch(p=4, k=2, d=64)
    lin = torch.nn.Linear(64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats = lin(x)
        assert feats.dtype == torch.bfloat16
        d = pairwise_distance(feats)
        out = multi_masking_triplet_loss(feats, y, m)
    assert d.dtype == torch.float32 and out.dtype == torch.float32
    _close(out, reference_mmt(feats.detach().double(), y, m)[0], 1e-4)
    off = ~torch.eye(16, dtype=torch.bool)  # (the Gram trick is only accurate to ~3e-3 at d = 0)
    _close(d[off], torch.cdist(feats.detach().double(), feats.detach().double())[off], 1e-4)


def test_identical_embeddings_give_margin_and_finite_gradients():
    x, y, m = pk_batch(p=3, k=2, d=8)
    x = torch.ones_like(x).requires_grad_(True)
    out = multi_masking_triplet_loss(x, y, m, margin=0.3, return_parts=True)
    _close(out.mman, 0.3, 1e-5)  # hardest positive 0, hardest negative 0
    _close(out.mmap, 0.0, 1e-9)
    out.loss.backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("distance", ["euclidean", "sqeuclidean", "cosine"])
def test_pairwise_distance_matches_cdist_and_paired(distance):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(7, 5, generator=g, dtype=torch.float64), torch.randn(4, 5, generator=g, dtype=torch.float64)
    d = pairwise_distance(a, b, distance=distance)
    if distance == "cosine":
        want = 1 - torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T
    else:
        want = torch.cdist(a, b) ** (2 if distance == "sqeuclidean" else 1)
    _close(d, want, 1e-9)
    _close(paired_distance(a[:4], b, distance=distance), torch.diagonal(want[:4]), 1e-9)


def test_distance_gradient_finite_at_zero():
    x = torch.zeros(3, 4, requires_grad=True)
    pairwise_distance(x).sum().backward()
    assert torch.isfinite(x.grad).all()
    y = torch.zeros(3, 4, requires_grad=True)
    paired_distance(y, y.detach()).sum().backward()
    assert torch.isfinite(y.grad).all()


def test_bad_distance_name():
    with pytest.raises(ValueError, match="distance"):
        pairwise_distance(torch.zeros(2, 2), distance="manhattan")


# ----------------------------------------------------------------------------- edge cases

def _assert_zero_with_zero_grad(fn, x):
    x = x.clone().requires_grad_(True)
    out = fn(x)
    assert out.shape == () and float(out.detach()) == 0.0
    out.backward()
    assert x.grad is not None and torch.equal(x.grad, torch.zeros_like(x))


def test_one_modality_batch_has_no_valid_anchor():
    x, y, _ = pk_batch()
    m = torch.zeros_like(y)
    _assert_zero_with_zero_grad(lambda e: multi_masking_triplet_loss(e, y, m), x)
    parts = multi_masking_triplet_loss(x, y, m, return_parts=True)
    assert int(parts.num_valid) == 0
    # the classic batch-hard loss still has anchors on the same batch
    assert float(batch_hard_triplet_loss(x, y, m, margin=10.0)) > 0


def test_singleton_identities_and_single_identity():
    x, _, m = pk_batch(p=2, k=2)
    _assert_zero_with_zero_grad(lambda e: multi_masking_triplet_loss(e, torch.arange(8), m), x)
    _assert_zero_with_zero_grad(lambda e: multi_masking_triplet_loss(e, torch.zeros(8, dtype=torch.long), m), x)


def test_empty_batch():
    for reduction in ("mean", "sum"):
        _assert_zero_with_zero_grad(
            lambda e: multi_masking_triplet_loss(e, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long),
                                                 reduction=reduction), torch.zeros(0, 4))
    out = multi_masking_triplet_loss(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long),
                                     torch.zeros(0, dtype=torch.long), reduction="none")
    assert out.shape == (0,)


def test_missing_partner_only_that_anchor_is_invalid():
    # identity 0 has a visible and a thermal image; identity 1 only visible; identity 2 only thermal
    x = torch.tensor([[0.0], [1.0], [5.0], [9.0]])
    y = torch.tensor([0, 0, 1, 2])
    m = torch.tensor([0, 1, 0, 1])
    per = multi_masking_triplet_loss(x, y, m, margin=10.0, reduction="none")
    # anchor 0: pos {1} d=1, cross negatives {3} d=9 -> 1 - 9 + 10 = 2
    # anchor 1: pos {0} d=1, cross negatives {2} d=4 -> 1 - 4 + 10 = 7
    _close(per, [2.0, 7.0, 0.0, 0.0], 1e-5)
    _close(multi_masking_triplet_loss(x, y, m, margin=10.0), 4.5, 1e-5)


def test_paper_sampler_batch_every_anchor_valid():
    x, y, m = pk_batch(p=4, k=3)
    crit = MultiMaskingTripletLoss()
    loss = crit(x, y, m)
    assert int(crit.last_parts.num_valid) == x.shape[0]
    _close(loss, crit.last_parts.mman + crit.pos_weight * crit.last_parts.mmap, 1e-6)


def test_anchor_direction_switch_splits_the_sum():
    x, y, m = pk_batch(p=4, k=2, seed=3)
    kw = dict(margin=2.0, reduction="sum")
    both = multi_masking_triplet_loss(x, y, m, **kw)
    vis = multi_masking_triplet_loss(x, y, m, anchors="visible", **kw)
    th = multi_masking_triplet_loss(x, y, m, anchors="thermal", **kw)
    _close(both, vis + th, 1e-5)
    assert float(vis) > 0 and float(th) > 0


def test_mining_picks_cross_modality_sets():
    x = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
    y, m = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1])
    mined = masked_hard_mining(pairwise_distance(x), y, m, y, m, anchor_index=torch.arange(4))
    assert mined.hard_positive.tolist() == [1, 0, 3, 2]
    assert mined.hard_negative.tolist() == [3, 2, 1, 0]
    assert mined.has_positive.all() and mined.has_negative.all()
    # "same" positives: no other same-modality image of the same identity
    mined = masked_hard_mining(pairwise_distance(x), y, m, y, m, positive_modality="same", anchor_index=torch.arange(4))
    assert not mined.has_positive.any()


# ----------------------------------------------------------------------------- modules and layouts

def test_module_matches_functional_and_exposes_parts():
    x, y, m = pk_batch(seed=5)
    crit = MultiMaskingTripletLoss(margin=0.5, pos_margin=0.05, pos_weight=0.7, distance="cosine")
    loss = crit(x, y, m)
    out = multi_masking_triplet_loss(x, y, m, margin=0.5, pos_margin=0.05, pos_weight=0.7, distance="cosine",
                                     return_parts=True)
    assert isinstance(out, MMTOutput)
    torch.testing.assert_close(loss, out.loss)
    for a, b in zip(crit.last_parts, out):
        torch.testing.assert_close(a, b)
        assert not a.requires_grad
    assert "margin=0.5" in repr(crit)
    assert mag_mmt.MultiMaskingTripletLoss is MultiMaskingTripletLoss


def test_forward_pair_equals_concatenated_batch():
    g = torch.Generator().manual_seed(1)
    v, t = torch.randn(6, 8, generator=g), torch.randn(5, 8, generator=g)
    vl, tl = torch.tensor([0, 0, 1, 1, 2, 3]), torch.tensor([0, 1, 1, 2, 2])
    crit = MultiMaskingTripletLoss(margin=1.0)
    e, y, m = concat_modalities(v, t, vl, tl)
    assert m.tolist() == [0] * 6 + [1] * 5
    torch.testing.assert_close(crit.forward_pair(v, t, vl, tl), crit(e, y, m))
    with pytest.raises(ValueError, match="feature size"):
        concat_modalities(v, torch.randn(5, 3), vl, tl)


def test_module_ref_emb_form():
    x, y, m = pk_batch(seed=2)
    rx, ry, rm = pk_batch(seed=3)
    crit = MultiMaskingTripletLoss(margin=1.0)
    got = crit(x, y, m, ref_emb=rx, ref_labels=ry, ref_modalities=rm)
    _close(got, reference_mmt(x.double(), y, m, margin=1.0, ref_emb=rx.double(), ref_labels=ry,
                              ref_modalities=rm)[0], 1e-5)
    bh = BatchHardTripletLoss(margin=1.0)
    got = bh(x, y, ref_emb=rx, ref_labels=ry)
    _close(got, reference_mmt(x.double(), y, [0] * 16, margin=1.0, pos_weight=0.0, positive_modality="any",
                              negative_modality="any", ref_emb=rx.double(), ref_labels=ry,
                              ref_modalities=[0] * 16)[0], 1e-5)


def test_batch_hard_module_is_mmt_configuration():
    bh = BatchHardTripletLoss(margin=0.4)
    assert isinstance(bh, MultiMaskingTripletLoss)
    assert (bh.positive_modality, bh.negative_modality, bh.pos_weight) == ("any", "any", 0.0)
    with pytest.raises(TypeError, match="pos_weight"):
        batch_hard_triplet_loss(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), pos_weight=1.0)


@given(batch=batches(max_n=10), cross=st.booleans())
@settings(max_examples=30)
def test_wrt_equals_reference(batch, cross):
    x, y, m = batch
    if cross:  # WRT with the MMT masks: both sets from the other modality
        got = weighted_regularized_triplet_loss(x, y, m, positive_modality="cross", negative_modality="cross")
        expect = _reference_wrt_cross(x, y, m)
    else:
        got = WeightedRegularizedTripletLoss()(x, y, m)
        expect = reference_wrt(x, y.tolist())
    _close(got, expect, 1e-6)


def _reference_wrt_cross(x, y, m):
    """Cross-modality WRT, per anchor: both sets from the other modality, plain softmax."""
    losses = []
    for i in range(len(y)):
        pos = [j for j in range(len(y)) if m[j] != m[i] and y[j] == y[i]]
        neg = [j for j in range(len(y)) if m[j] != m[i] and y[j] != y[i]]
        if not pos or not neg:
            continue
        dp = torch.stack([torch.dist(x[i], x[j]) for j in pos])
        dn = torch.stack([torch.dist(x[i], x[j]) for j in neg])
        wp, wn = torch.softmax(dp, 0), torch.softmax(-dn, 0)
        losses.append(torch.nn.functional.softplus((wp * dp).sum() - (wn * dn).sum()))
    return torch.stack(losses).mean() if losses else torch.tensor(0.0, dtype=torch.float64)


def test_wrt_gradients_finite_and_zero_batch():
    x, y, m = pk_batch()
    x = x.requires_grad_(True)
    weighted_regularized_triplet_loss(x, y, m).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    _assert_zero_with_zero_grad(lambda e: weighted_regularized_triplet_loss(e, torch.arange(16)), x.detach())


# ----------------------------------------------------------------------------- no host syncs, compile

@pytest.mark.parametrize("sync", [
    lambda x: x.tolist(), lambda x: x.sum().item(), lambda x: bool(x.sum() > 0), lambda x: x[x > 0],
    lambda x: x.nonzero(), lambda x: x.detach().cpu(), lambda x: x.detach().numpy(), lambda x: int(x[0, 0]),
    lambda x: float(x[0, 0]), lambda x: torch.unique(x), lambda x: x.masked_select(x > 0),
], ids=["tolist", "item", "bool", "mask-index", "nonzero", "cpu", "numpy", "int", "float", "unique",
        "masked_select"])
def test_sync_detector_sees_every_kind_of_read_back(sync):
    x = torch.randn(4, 3)
    assert host_syncs(lambda e: (sync(e), e.sum())[1], x)
    assert not host_syncs(lambda e: (e * 2).sum(), x)  # and nothing in plain arithmetic


def test_sync_detector_catches_a_tolist_on_the_hot_path(monkeypatch):
    """A ``.tolist()`` slipped into the mining (how the value checks read back) is reported,
    also when the code swallows the error that fake tensors raise."""
    import mag_mmt.functional.mining as L

    x, y, m = pk_batch()
    real = L.masked_hard_mining

    def leaky(dist, *args, **kwargs):
        try:
            dist.tolist()
        except Exception:
            pass
        return real(dist, *args, **kwargs)

    monkeypatch.setattr(L, "masked_hard_mining", leaky)
    found = host_syncs(lambda e, y, m: multi_masking_triplet_loss(e, y, m, validate=False),
                       x.requires_grad_(True), y, m)
    assert ".tolist()" in found


def test_value_checks_are_seen_as_the_sync_they_are():
    x, y, m = pk_batch()
    found = host_syncs(lambda e, y, m: multi_masking_triplet_loss(e, y, m, validate=True), x, y, m)
    assert ".tolist()" in found


_HOT_PATHS = {
    "mmt": lambda e, y, m: multi_masking_triplet_loss(e, y, m, validate=False, return_parts=True).loss,
    "batch_hard": lambda e, y, m: BatchHardTripletLoss(validate=False)(e, y, m),
    "chunked": lambda e, y, m: multi_masking_triplet_loss(e, y, m, validate=False, chunk_size=3),
    "any_cosine_none": lambda e, y, m: multi_masking_triplet_loss(
        e, y, m, validate=False, positive_modality="any", negative_modality="same", distance="cosine",
        reduction="none"),
    "mmap_only": lambda e, y, m: multi_masking_triplet_loss(e, y, m, validate=False, mman_weight=0.0),
    "ref_set": lambda e, y, m: multi_masking_triplet_loss(
        e, y, m, validate=False, ref_emb=e.detach()[:5] * 2, ref_labels=y[:5], ref_modalities=m[:5]),
    "ref_is_batch": lambda e, y, m: MultiMaskingTripletLoss(positive_modality="same", validate=False)(
        e, y, m, ref_emb=e, ref_labels=y, ref_modalities=m),
    "wrt": lambda e, y, m: weighted_regularized_triplet_loss(e, y, m, validate=False),
}


@pytest.mark.parametrize("kind", sorted(_HOT_PATHS))
def test_no_host_sync_with_validate_false(kind):
    x, y, m = pk_batch()
    x = x.requires_grad_(True)
    found = host_syncs(_HOT_PATHS[kind], x, y, m)
    assert not found, found


@pytest.mark.gpu
@pytest.mark.parametrize("kind", sorted(_HOT_PATHS))
def test_cuda_hot_paths_do_not_sync_and_match_cpu(kind):
    """On CUDA, CUDA's own detector raises at any host sync; the values equal the CPU's."""
    x, y, m = pk_batch()
    xc, yc, mc = x.cuda().requires_grad_(True), y.cuda(), m.cuda()
    _HOT_PATHS[kind](xc, yc, mc).sum().backward()  # warm-up: lazy initialisation may sync
    xc.grad = None
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = _HOT_PATHS[kind](xc, yc, mc)
        out.sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    x = x.requires_grad_(True)
    expected = _HOT_PATHS[kind](x, y, m)
    expected.sum().backward()
    torch.testing.assert_close(out.cpu(), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(xc.grad.cpu(), x.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_torch_compile_fullgraph_matches_eager():
    torch._dynamo.reset()
    x, y, m = pk_batch(p=3, k=2, d=8, seed=4)
    crit = MultiMaskingTripletLoss(margin=1.0, validate=True)  # value checks skipped while tracing
    compiled = torch.compile(crit, fullgraph=True)
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    a = compiled(x1, y, m)
    b = crit(x2, y, m)
    a.backward()
    b.backward()
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-5, atol=1e-6)
    # the reference set that is the batch, recognised while tracing; MMAP alone
    crit = MultiMaskingTripletLoss(margin=1.0, positive_modality="same", mman_weight=0.0)
    compiled = torch.compile(crit, fullgraph=True)
    x3 = x.clone().requires_grad_(True)
    torch.testing.assert_close(compiled(x3, y, m, ref_emb=x3, ref_labels=y, ref_modalities=m), crit(x, y, m),
                               rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- bad input

def _good():
    x, y, m = pk_batch(p=2, k=1, d=4)
    return x, y, m


@pytest.mark.parametrize("mutate, match", [
    (lambda x, y, m: (x[:3], y, m), "same length"),
    (lambda x, y, m: (x, y[:3], m), "same length"),
    (lambda x, y, m: (x, y, m[:3]), "same length"),
    (lambda x, y, m: (x, y.float(), m), "labels must have an integer dtype"),
    (lambda x, y, m: (x, y, m.float()), "modalities must have an integer dtype"),
    (lambda x, y, m: (x, y, m.bool()), "modalities must have an integer dtype"),
    (lambda x, y, m: (x.long(), y, m), "embeddings must have a floating dtype"),
    (lambda x, y, m: (x, y, m + 1), r"modalities must hold only 0 \(visible\) and 1 \(thermal\)"),
    (lambda x, y, m: (x, y, m - 1), r"modalities must hold only 0"),
    (lambda x, y, m: (x.index_fill(0, torch.tensor([1]), float("nan")), y, m), "embeddings contain NaN or Inf"),
    (lambda x, y, m: (x.index_fill(0, torch.tensor([0]), float("inf")), y, m), "embeddings contain NaN or Inf"),
    (lambda x, y, m: (x[0], y, m), "embeddings must have 2 dimensions"),
    (lambda x, y, m: (x[None], y, m), "embeddings must have 2 dimensions"),
    (lambda x, y, m: (x, y[:, None], m), "labels must have 1 dimensions"),
    (lambda x, y, m: (x, y, m[:, None]), "modalities must have 1 dimensions"),
    (lambda x, y, m: (x[:, :0], y, m), "at least one feature"),
])
def test_bad_input_raises_value_error(mutate, match):
    x, y, m = mutate(*_good())
    with pytest.raises(ValueError, match=match):
        multi_masking_triplet_loss(x, y, m)
    with pytest.raises(ValueError, match=match):
        MultiMaskingTripletLoss()(x, y, m)


def test_negative_labels_are_fine():
    x, y, m = _good()
    a = multi_masking_triplet_loss(x, y, m, margin=5.0)
    b = multi_masking_triplet_loss(x, y - 7, m, margin=5.0)
    torch.testing.assert_close(a, b)
    assert float(a) > 0


def test_value_checks_can_be_skipped():
    x, y, m = _good()
    out = multi_masking_triplet_loss(x, y, m + 5, validate=False)  # garbage in, no sync, no error
    assert out.shape == ()


@pytest.mark.parametrize("kwargs, match", [
    ({"positive_modality": "other"}, "positive_modality"),
    ({"negative_modality": "both"}, "negative_modality"),
    ({"anchors": "infrared"}, "anchors"),
    ({"distance": "l1"}, "distance"),
    ({"reduction": "max"}, "reduction"),
    ({"chunk_size": 0}, "chunk_size"),
    ({"chunk_size": 2.5}, "chunk_size"),
])
def test_bad_options(kwargs, match):
    x, y, m = _good()
    with pytest.raises(ValueError, match=match):
        multi_masking_triplet_loss(x, y, m, **kwargs)
    with pytest.raises(ValueError, match=match):
        MultiMaskingTripletLoss(**kwargs)


def test_bad_reference_set():
    x, y, m = _good()
    with pytest.raises(ValueError, match="given together"):
        multi_masking_triplet_loss(x, y, m, ref_emb=x)
    with pytest.raises(ValueError, match="same feature size"):
        multi_masking_triplet_loss(x, y, m, ref_emb=x[:, :2], ref_labels=y, ref_modalities=m)
    with pytest.raises(ValueError, match="ref_modalities must hold only 0"):
        multi_masking_triplet_loss(x, y, m, ref_emb=x, ref_labels=y, ref_modalities=m + 2)
    with pytest.raises(TypeError, match="ref_labels must be a torch.Tensor"):
        multi_masking_triplet_loss(x, y, m, ref_emb=x, ref_labels=[0, 1], ref_modalities=m)


def test_numpy_oracle_is_not_vacuous():
    # guards the oracle itself: a hand-computed batch-hard value
    x = np.array([[0.0], [1.0], [3.0], [7.0]])
    # anchors: 0 -> 1 - 3 + 1 = -1 -> 0; 1 -> 1 - 2 + 1 = 0; 2 -> 4 - 2 + 1 = 3; 3 -> 4 - 6 + 1 = -1 -> 0
    assert numpy_batch_hard(x, [0, 0, 1, 1], 1.0) == pytest.approx(0.75)


@pytest.mark.parametrize("distance", ["euclidean", "sqeuclidean", "cosine"])
def test_indexed_distance_gradcheck(distance):
    from mag_mmt.functional import indexed_distance

    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    r = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    index = torch.tensor([[0, 4, 4], [1, 1, 2], [3, 0, 1], [2, 2, 2]])
    assert torch.autograd.gradcheck(lambda a, b: indexed_distance(a, b, index, distance=distance), (x, r))
    # r is x (the loss's own-batch case takes a separate path inside)
    sq = torch.tensor([[0, 1, 3], [1, 1, 2], [3, 0, 1], [2, 2, 0]])
    assert torch.autograd.gradcheck(lambda a: indexed_distance(a, a, sq, distance=distance), (x,))
    # and the values agree with the full matrix
    full = pairwise_distance(x, r, distance=distance)
    _close(indexed_distance(x, r, index, distance=distance), full.gather(1, index), 1e-9)
    with pytest.raises(ValueError, match="index must have shape"):
        indexed_distance(x, r, index[:2])


# ----------------------------------------------------------------------------- gather blocks (performance path)

@pytest.mark.parametrize("distance", ["euclidean", "sqeuclidean", "cosine"])
@pytest.mark.parametrize("self_ref", [True, False])
def test_indexed_distance_row_blocks_equal_one_block(monkeypatch, distance, self_ref):
    import mag_mmt.functional.distances as Dm

    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(7, 5, generator=g, dtype=torch.float64)
    r0 = x0 if self_ref else torch.randn(6, 5, generator=g, dtype=torch.float64)
    index = torch.randint(0, r0.shape[0], (7, 3), generator=g)
    upstream = torch.randn(7, 3, generator=g, dtype=torch.float64)

    def run():
        x = x0.clone().requires_grad_(True)
        r = x if self_ref else r0.clone().requires_grad_(True)
        d = Dm.indexed_distance(x, r, index, distance=distance)
        (d * upstream).sum().backward()
        return d.detach(), x.grad, (None if self_ref else r.grad)

    one = run()
    monkeypatch.setattr(Dm, "GATHER_BLOCK_ELEMENTS", 2 * 3 * 5)  # two anchors per block: 4 blocks
    assert len(Dm._row_blocks(7, 3, 5)) == 4
    blocked = run()
    torch.testing.assert_close(blocked[0], one[0], rtol=0, atol=0)  # values: same kernels per row
    for a, b in zip(blocked[1:], one[1:]):
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)  # summation order may differ
    x = x0.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: Dm.indexed_distance(a, a if self_ref else r0, index,
                                                                  distance=distance), (x,))


def test_loss_with_small_gather_blocks_equals_default(monkeypatch):
    import mag_mmt.functional.distances as Dm

    x, y, m = pk_batch(p=5, k=3, d=8, seed=7)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a = multi_masking_triplet_loss(x1, y, m, return_parts=True)
    monkeypatch.setattr(Dm, "GATHER_BLOCK_ELEMENTS", 3 * 8 * 4)
    b = multi_masking_triplet_loss(x2, y, m, return_parts=True)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=0, atol=0)
    a.loss.backward()
    b.loss.backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-6, atol=1e-7)


def test_benchmark_naive_baseline_is_the_same_loss():
    # the benchmark's "naive per-anchor loop" must compute MMT, or its speed-up means nothing
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "bench_loss.py"
    spec = importlib.util.spec_from_file_location("_bench_loss", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    x, y, m = bench.make_batch(24, 6, "cpu", k=3, seed=1)
    x = (0.2 * x).requires_grad_(True)
    naive = bench.naive_per_anchor_mmt(x, y, m)
    torch.testing.assert_close(naive, multi_masking_triplet_loss(x, y, m), rtol=1e-5, atol=1e-6)
    assert float(naive.detach()) > 0
