"""Adapters for AGW, CAJ and TSLFN: the loss is exactly MMT on the explicitly built batch,
``correct`` means what it means in the repos, gradients reach both modality branches of
stand-ins that follow each repo's forward contract, and wrong layouts fail clearly."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mag_mmt import ModalityAugment
from mag_mmt.adapters import AGW_LAYOUT, CAJ_LAYOUT, agw, block_size, caj, layout_batch, layout_modalities, tslfn
from mag_mmt.functional import multi_masking_triplet_loss
from tests.reference_losses import reference_mmt
from tests.standins import AGWStandIn, CAJStandIn, TSLFNStandIn

V, T = 0, 1

# --------------------------------------------------------------------------- helpers


def explicit_modalities(*blocks: tuple[int, int]) -> torch.Tensor:
    """Written out by hand: ``(code, rows)`` per block, in row order."""
    return torch.tensor([code for code, rows in blocks for _ in range(rows)], dtype=torch.long)


def paired_labels(ids: list[int], k: int) -> torch.Tensor:
    """The repos' IdentitySampler: each identity ``k`` times, in order (same for both modalities)."""
    return torch.tensor([i for i in ids for _ in range(k)], dtype=torch.long)


MMT_OPTIONS = [
    {},
    {"margin": 0.7, "pos_margin": 0.0, "pos_weight": 0.5},
    {"positive_modality": "same"},
    {"positive_modality": "any", "negative_modality": "any", "pos_weight": 0.0},
    {"anchors": "visible"},
    {"anchors": "thermal", "normalize": True},
    {"distance": "cosine", "margin": 0.1},
    {"reduction": "sum"},
]

batches = st.builds(
    lambda p, k, d, seed, opt: (p, k, d, seed, opt),
    st.integers(1, 4),  # identities
    st.integers(1, 3),  # images per identity and modality
    st.integers(1, 6),  # feature size
    st.integers(0, 2**31 - 1),
    st.sampled_from(MMT_OPTIONS),
)


def _features(n: int, d: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype)


def reference_correct(x: torch.Tensor, labels: torch.Tensor, alpha: float = 1.0) -> tuple[int, int]:
    """Slow per-anchor reading of TripletLoss_WRT/ADP's ``correct`` (float64), with the repos'
    conventions: the positives' softmax is shifted by their largest logit, the negatives' by 0
    (the masked-out entries of the row), and 1e-6 is added to both normalisers.
    Returns ``(count, near_ties)``; near ties may legitimately flip in float32."""
    rows = x.double().tolist()
    y = labels.tolist()
    n = len(y)

    def dist(i: int, j: int) -> float:
        return math.sqrt(max(sum((a - b) ** 2 for a, b in zip(rows[i], rows[j])), 1e-12))

    def soft(i: int, members: list[int], sign: float) -> float:
        if not members:
            return 0.0
        ds = [dist(i, j) for j in members]
        top = max(max(sign * alpha * v for v in ds), 0.0)
        w = [math.exp(sign * alpha * v - top) for v in ds]
        return sum(wi * v for wi, v in zip(w, ds)) / (sum(w) + 1e-6)

    count = ties = 0
    for i in range(n):
        pos = [j for j in range(n) if y[j] == y[i]]  # the anchor itself included, as in loss.py
        neg = [j for j in range(n) if y[j] != y[i]]
        far, near = soft(i, pos, 1.0), soft(i, neg, -1.0)
        count += near >= far
        ties += abs(near - far) < 1e-4 * max(1.0, far)
    return count, ties


def repo_loss_py_correct(inputs: torch.Tensor, targets: torch.Tensor, alpha: float = 1.0) -> int:
    """AGW's / CAJ's ``correct``, transcribed operation by operation from the repos' ``loss.py``
    (``pdist_torch``, ``softmax_weights`` and the lines of ``TripletLoss_WRT.forward`` /
    ``TripletLoss_ADP.forward`` that compute it), float32 like the repos."""
    n = inputs.shape[0]
    d = inputs.pow(2).sum(dim=1, keepdim=True).expand(n, n)
    d = d + inputs.pow(2).sum(dim=1, keepdim=True).expand(n, n).t()
    d = d.addmm(inputs, inputs.t(), beta=1, alpha=-2).clamp(min=1e-12).sqrt()
    is_pos = targets.expand(n, n).eq(targets.expand(n, n).t()).float()
    is_neg = targets.expand(n, n).ne(targets.expand(n, n).t()).float()
    dist_ap, dist_an = d * is_pos, d * is_neg

    def softmax_weights(dist, mask):
        diff = dist - torch.max(dist * mask, dim=1, keepdim=True)[0]
        z = torch.sum(torch.exp(diff) * mask, dim=1, keepdim=True) + 1e-6
        return torch.exp(diff) * mask / z

    furthest_positive = torch.sum(dist_ap * softmax_weights(dist_ap * alpha, is_pos), dim=1)
    closest_negative = torch.sum(dist_an * softmax_weights(-dist_an * alpha, is_neg), dim=1)
    return int(torch.ge(closest_negative, furthest_positive).sum())


def reference_mmt_correct(x: torch.Tensor, labels: torch.Tensor, modalities: torch.Tensor) -> int:
    """Default masks: cross-modality positives/negatives; valid anchors with min neg >= max pos."""
    y, m = labels.tolist(), modalities.tolist()
    count = 0
    for i in range(len(y)):
        pos = [float((x[i] - x[j]).norm()) for j in range(len(y)) if j != i and y[j] == y[i] and m[j] != m[i]]
        neg = [float((x[i] - x[j]).norm()) for j in range(len(y)) if y[j] != y[i] and m[j] != m[i]]
        if pos and neg and min(neg) >= max(pos):
            count += 1
    return count


# --------------------------------------------------------------------------- layout helpers


def test_layout_modalities_blocks_in_row_order():
    assert layout_modalities(4, AGW_LAYOUT).tolist() == [0, 0, 1, 1]
    assert layout_modalities(6, CAJ_LAYOUT).tolist() == [0, 0, 0, 0, 1, 1]
    assert layout_modalities(3, (1, 0, 1)).tolist() == [1, 0, 1]
    assert layout_modalities(6, CAJ_LAYOUT).dtype == torch.int64
    assert block_size(9, CAJ_LAYOUT) == 3


@pytest.mark.parametrize(
    "n, layout, match",
    [
        (5, AGW_LAYOUT, "5 rows .*not a positive multiple of 2"),
        (0, AGW_LAYOUT, "0 rows"),
        (8, CAJ_LAYOUT, r"3 equal blocks of rows \[visible \| visible \| thermal\]"),
        (4, (), "at least one block"),
        (4, (0, 2), "modality codes"),
        (4, (True, False), "modality codes"),
    ],
)
def test_layout_errors_name_the_problem(n, layout, match):
    with pytest.raises(ValueError, match=match):
        layout_modalities(n, layout)


def test_layout_batch_shape_and_dtype_checks():
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="same length"):
        layout_batch(x, y[:3], AGW_LAYOUT)
    with pytest.raises(ValueError, match="integer dtype"):
        layout_batch(x, y.float(), AGW_LAYOUT)
    with pytest.raises(ValueError, match="2 dimensions"):
        layout_batch(x.reshape(-1), y, AGW_LAYOUT)
    with pytest.raises(ValueError, match="floating dtype"):
        layout_batch(x.long(), y, AGW_LAYOUT)


def test_unknown_adapter_attribute():
    import mag_mmt.adapters as adapters

    with pytest.raises(AttributeError, match="nope"):
        adapters.nope  # noqa: B018


# --------------------------------------------------------------------------- AGW


@settings(max_examples=40)
@given(batches)
def test_agw_loss_is_mmt_on_explicit_batch(case):
    p, k, d, seed, opt = case
    label1 = paired_labels(list(range(p)), k)
    b = label1.numel()
    feat = _features(2 * b, d, seed)
    labels = torch.cat((label1, label1))
    loss, correct = agw.MMTCriterion(**opt)(feat, labels)
    expected = multi_masking_triplet_loss(feat, labels, explicit_modalities((V, b), (T, b)), **opt)
    assert torch.equal(loss, expected)
    count, ties = reference_correct(feat, labels)
    assert isinstance(correct, int)
    assert abs(correct - count) <= ties


def test_agw_loss_depends_on_the_modality_layout():
    """The equality above could fail: the same rows with other modalities give another loss."""
    torch.manual_seed(0)
    label1 = paired_labels([0, 1, 2], 2)
    feat, labels = torch.randn(12, 5), torch.cat((label1, label1))
    loss, _ = agw.MMTCriterion()(feat, labels)
    alternating = torch.arange(12) % 2
    assert not torch.allclose(loss, multi_masking_triplet_loss(feat, labels, alternating))
    assert torch.allclose(loss, multi_masking_triplet_loss(feat, labels, explicit_modalities((V, 6), (T, 6))))


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
def test_agw_matches_slow_reference_float64_and_gradients():
    torch.manual_seed(1)
    label1 = paired_labels([3, 8, 5], 2)
    feat = torch.randn(12, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.cat((label1, label1))
    loss, _ = agw.MMTCriterion(margin=0.5)(feat, labels)
    ref, *_ = reference_mmt(feat, labels.tolist(), [0] * 6 + [1] * 6, margin=0.5)
    torch.testing.assert_close(loss, ref)
    (g,) = torch.autograd.grad(loss, feat)
    (g_ref,) = torch.autograd.grad(ref, feat)
    torch.testing.assert_close(g, g_ref)


def test_agw_correct_variants():
    torch.manual_seed(2)
    label1 = paired_labels([0, 1, 2, 3], 2)
    feat, labels = torch.randn(16, 3), torch.cat((label1, label1))
    as_int = agw.MMTCriterion()(feat, labels)[1]
    as_tensor = agw.MMTCriterion(correct_as_tensor=True)(feat, labels)[1]
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.dim() == 0 and int(as_tensor) == as_int
    mmt_count = agw.MMTCriterion(correct="mmt")(feat, labels)[1]
    assert mmt_count == reference_mmt_correct(feat, labels, explicit_modalities((V, 8), (T, 8)))
    with pytest.raises(ValueError, match="correct must be"):
        agw.MMTCriterion(correct="accuracy")


def test_agw_correct_examples():
    # well separated identities: every row is correct; collapsed features: positives at 1e-6 vs
    # negatives at 1e-6 -> ">=" holds everywhere as in the repo (distance floor sqrt(1e-12)).
    x = torch.tensor([[0.0], [10.0], [0.5], [10.5]])
    y = torch.tensor([0, 1, 0, 1])
    assert agw.MMTCriterion()(x, y)[1] == 4
    # swapped identities: the nearest rows belong to the other identity
    x = torch.tensor([[0.0], [0.1], [10.0], [10.1]])
    y = torch.tensor([0, 1, 0, 1])
    assert agw.MMTCriterion()(x, y)[1] == 0


@settings(max_examples=60)
@given(batches, st.sampled_from([0.1, 1.0, 5.0, 20.0, 60.0]), st.sampled_from([1.0, 2.0]))
def test_correct_equals_the_repos_count_exactly(case, scale, alpha):
    """Same features -> the very number loss.py computes, at every scale (AGW and CAJ)."""
    p, k, d, seed, _ = case
    label1 = paired_labels(list(range(p)), k)
    feat = _features(2 * label1.numel(), d, seed) * scale
    labels = torch.cat((label1, label1))
    assert agw.MMTCriterion()(feat, labels)[1] == repo_loss_py_correct(feat, labels)
    feat3 = torch.cat((feat, feat[: label1.numel()] + 0.01))
    labels3 = torch.cat((label1, label1, label1))
    assert caj.MMTCriterion(correct_alpha=alpha)(feat3, labels3)[1] == repo_loss_py_correct(feat3, labels3, alpha)


def test_correct_collapses_like_the_repo_at_large_distances():
    """The repos' count falls to 0 once negatives are far (median distance ~30-40), although
    every row's nearest negative is farther than its furthest positive; the adapter reports
    that same 0 (a numerically stable softmax would count all 16 rows)."""
    torch.manual_seed(5)
    label1 = paired_labels([0, 1, 2, 3], 2)  # B = 8, 16 rows
    labels = torch.cat((label1, label1))
    centres = torch.randn(4, 64) * 3.0
    feat = centres[labels] + 0.3 * torch.randn(16, 64)
    dist = torch.cdist(feat, feat)
    assert 25.0 < dist[labels.unsqueeze(0) != labels.unsqueeze(1)].median() < 45.0
    assert repo_loss_py_correct(feat, labels) == 0
    assert agw.MMTCriterion()(feat, labels)[1] == 0
    assert agw.MMTCriterion(correct="mmt")(feat, labels)[1] == 16  # hard triplets all satisfied
    stable = 0
    for i in range(16):
        pos, neg = dist[i][labels == labels[i]], dist[i][labels != labels[i]]
        stable += int((torch.softmax(-neg, 0) * neg).sum() >= (torch.softmax(pos, 0) * pos).sum())
    assert stable == 16
    # small distances: the same features scaled down are counted in full by both
    assert agw.MMTCriterion()(feat / 10, labels)[1] == repo_loss_py_correct(feat / 10, labels) == 16


def test_agw_normalize_feature_keyword():
    torch.manual_seed(3)
    label1 = paired_labels([0, 1], 2)
    feat, labels = torch.randn(8, 6) * 5, torch.cat((label1, label1))
    loss, _ = agw.MMTCriterion()(feat, labels, normalize_feature=True)
    expected = multi_masking_triplet_loss(F.normalize(feat, dim=1), labels, explicit_modalities((V, 4), (T, 4)))
    torch.testing.assert_close(loss, expected)


def test_agw_wrong_layouts_fail_clearly():
    crit = agw.MMTCriterion()
    label1 = paired_labels([0, 1], 2)  # B = 4
    with pytest.raises(ValueError, match="AGW features must hold 2 equal blocks.*got 7 rows"):
        crit(torch.randn(7, 3), torch.zeros(7, dtype=torch.long))
    with pytest.raises(ValueError, match="same length, got 8 and 6"):
        crit(torch.randn(8, 3), torch.zeros(6, dtype=torch.long))
    # a CAJ batch (3 blocks) handed to the AGW criterion: 12 rows split in halves do not pair
    caj_labels = torch.cat((label1, label1, label1.flip(0)))
    with pytest.raises(ValueError, match="AGW layout .*must agree row by row"):
        crit(torch.randn(12, 3), caj_labels)
    # visible rows fed in a different order than the thermal rows
    with pytest.raises(ValueError, match="must agree row by row"):
        crit(torch.randn(8, 3), torch.cat((label1, label1.flip(0))))
    # ...which an unpaired sampler may legitimately produce
    loss, _ = agw.MMTCriterion(paired=False)(torch.randn(8, 3), torch.cat((label1, label1.flip(0))))
    assert torch.isfinite(loss)
    # validate=False skips the value checks, never the shape checks
    agw.MMTCriterion(validate=False)(torch.randn(12, 3), caj_labels)
    with pytest.raises(ValueError, match="7 rows"):
        agw.MMTCriterion(validate=False)(torch.randn(7, 3), torch.zeros(7, dtype=torch.long))
    with pytest.raises(ValueError, match="margin|positive_modality"):
        agw.MMTCriterion(positive_modality="other")


# --------------------------------------------------------------------------- CAJ


@settings(max_examples=40)
@given(batches)
def test_caj_loss_is_mmt_on_explicit_batch(case):
    p, k, d, seed, opt = case
    label1 = paired_labels(list(range(p)), k)
    b = label1.numel()
    feat = _features(3 * b, d, seed)
    labels = torch.cat((label1, label1, label1))
    loss, correct = caj.MMTCriterion(**opt)(feat, labels)
    # both visible views are visible rows
    expected = multi_masking_triplet_loss(feat, labels, explicit_modalities((V, 2 * b), (T, b)), **opt)
    assert torch.equal(loss, expected)
    count, ties = reference_correct(feat, labels)
    assert abs(correct - count) <= ties


def test_caj_matches_slow_reference_and_alpha():
    torch.manual_seed(4)
    label1 = paired_labels([1, 2], 3)
    feat = torch.randn(18, 4, dtype=torch.float64)
    labels = torch.cat((label1, label1, label1))
    loss, _ = caj.MMTCriterion()(feat, labels)
    ref, *_ = reference_mmt(feat, labels.tolist(), [0] * 12 + [1] * 6)
    torch.testing.assert_close(loss, ref)
    for alpha in (1.0, 4.0):
        count, ties = reference_correct(feat, labels, alpha=alpha)
        got = caj.MMTCriterion(correct_alpha=alpha)(feat, labels)[1]
        assert abs(got - count) <= ties


def test_caj_wrong_layouts_fail_clearly():
    crit = caj.MMTCriterion()
    label1 = paired_labels([0, 1], 2)  # B = 4
    with pytest.raises(ValueError, match=r"CAJ features must hold 3 equal blocks.*got 8 rows"):
        crit(torch.randn(8, 3), torch.cat((label1, label1)))
    with pytest.raises(ValueError, match="same length"):
        crit(torch.randn(12, 3), torch.cat((label1, label1)))
    # an AGW batch of 12 rows (B = 6) handed to the CAJ criterion
    label6 = paired_labels([0, 1, 2], 2)
    with pytest.raises(ValueError, match=r"CAJ layout .*block 0 \(visible\) and block 1 \(visible\)"):
        crit(torch.randn(12, 3), torch.cat((label6, label6)))
    # the two view blocks must always agree, paired or not
    with pytest.raises(ValueError, match="block 0 .* block 1"):
        caj.MMTCriterion(paired=False)(torch.randn(12, 3), torch.cat((label1, label1.flip(0), label1)))
    # thermal block unpaired: an error by default, fine with paired=False
    labels = torch.cat((label1, label1, label1.flip(0)))
    with pytest.raises(ValueError, match=r"block 0 \(visible\) and block 2 \(thermal\)"):
        crit(torch.randn(12, 3), labels)
    assert torch.isfinite(caj.MMTCriterion(paired=False)(torch.randn(12, 3), labels)[0])


class _SumAug:
    """Stand-in for MAG that makes the pairing visible: v' = v + t, t' = t + 10 v."""

    def __call__(self, v, t):
        return v + t, t + 10 * v


def test_augment_caj_batch_pairs_each_view_with_its_thermal_image():
    v0, v1, t = torch.rand(3, 3, 4, 2), torch.rand(3, 3, 4, 2), torch.rand(3, 3, 4, 2)
    a, b, c = caj.augment_caj_batch(_SumAug(), v0, v1, t)
    torch.testing.assert_close(a, v0 + t)
    torch.testing.assert_close(b, v1 + t)
    torch.testing.assert_close(c, t + 10 * v0)
    a, b, c = caj.augment_caj_batch(_SumAug(), v0, v1, t, views="first")
    torch.testing.assert_close(a, v0 + t)
    assert b is v1
    torch.testing.assert_close(c, t + 10 * v0)
    with pytest.raises(ValueError, match="views must be"):
        caj.augment_caj_batch(_SumAug(), v0, v1, t, views="second")
    with pytest.raises(ValueError, match="same shape"):
        caj.augment_caj_batch(_SumAug(), v0, v1[:2], t)
    with pytest.raises(ValueError, match="one thermal image per visible image"):
        caj.augment_caj_batch(_SumAug(), v0, v1, t[:2])


def test_augment_caj_batch_with_modality_augment_exchanges_boxes_by_index():
    g = torch.Generator().manual_seed(0)
    v0, v1, t = (torch.rand(4, 3, 16, 8, generator=g) for _ in range(3))
    a, b, c = caj.augment_caj_batch(ModalityAugment(p=1.0, generator=0), v0, v1, t)
    for out, src, partner in ((a, v0, t), (b, v1, t), (c, t, v0)):
        changed = out != src
        assert changed.flatten(1).any(dim=1).all()  # p = 1: every image got a box
        assert torch.equal(out[changed], partner[changed])  # ...from its partner at the same index


# --------------------------------------------------------------------------- TSLFN


@settings(max_examples=40)
@given(batches)
def test_tslfn_loss_is_mmt_on_explicit_batch(case):
    p, k, d, seed, opt = case
    label1 = paired_labels(list(range(p)), k)
    b = label1.numel()
    feat = F.normalize(_features(2 * b, d, seed), dim=1)
    fv, ft = feat.chunk(2, 0)
    loss = tslfn.MMTCriterion(**opt)(fv, ft, label1, label1.clone())
    expected = multi_masking_triplet_loss(
        torch.cat((fv, ft)), torch.cat((label1, label1)), explicit_modalities((V, b), (T, b)), **opt
    )
    assert torch.equal(loss, expected)


def test_tslfn_unpaired_blocks_of_different_sizes():
    torch.manual_seed(5)
    fv, ft = torch.randn(4, 3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    lv, lt = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 2, 2, 0])
    loss = tslfn.MMTCriterion(paired=False)(fv, ft, lv, lt)
    ref, *_ = reference_mmt(torch.cat((fv, ft)), lv.tolist() + lt.tolist(), [0] * 4 + [1] * 6)
    torch.testing.assert_close(loss, ref)


def test_tslfn_wrong_layouts_fail_clearly():
    crit = tslfn.MMTCriterion()
    y = torch.tensor([0, 0, 1, 1])
    with pytest.raises(ValueError, match="same number of rows, got 4 and 3"):
        crit(torch.randn(4, 3), torch.randn(3, 3), y, y[:3])
    with pytest.raises(ValueError, match="feat_visible and label_visible must have the same length"):
        crit(torch.randn(4, 3), torch.randn(4, 3), y[:3], y)
    with pytest.raises(ValueError, match="feat_thermal and label_thermal"):
        crit(torch.randn(4, 3), torch.randn(4, 3), y, y[:2])
    with pytest.raises(ValueError, match="same feature size"):
        crit(torch.randn(4, 3), torch.randn(4, 5), y, y)
    with pytest.raises(ValueError, match="agree row by row"):
        crit(torch.randn(4, 3), torch.randn(4, 3), y, y.flip(0))
    with pytest.raises(ValueError, match="visible and thermal rows"):
        tslfn.MMTCriterion(paired=False)(torch.randn(0, 3), torch.randn(4, 3), y[:0], y)
    with pytest.raises(ValueError, match=r"TSLFN feat\[1\] must hold 2 equal blocks.*got 7 rows"):
        crit.parts((torch.randn(8, 3), torch.randn(7, 3)), y, y)
    with pytest.raises(ValueError, match="sequence of part features"):
        crit.parts(torch.randn(8, 3), y, y)


# --------------------------------------------------------------------------- stand-ins and end to end


def _images(b: int, seed: int, h: int = 24, w: int = 12) -> torch.Tensor:
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("gm_pool", [True, False])
def test_agw_standin_contract(gm_pool):
    torch.manual_seed(0)
    net = AGWStandIn(class_num=5, dim=8, gm_pool=gm_pool)
    x1, x2 = _images(4, 1), _images(4, 2)
    feat, logits = net(x1, x2)
    assert feat.shape == (8, 8) and logits.shape == (8, 5)
    net.eval()
    with torch.no_grad():
        pool, bn = net(x1, x2, 0)
        pool_v, bn_v = net(x1, x2, 1)
        pool_t, _ = net(x1, x2, 2)
    assert pool.shape == bn.shape == (8, 8)
    torch.testing.assert_close(pool.norm(dim=1), torch.ones(8))
    torch.testing.assert_close(bn.norm(dim=1), torch.ones(8))
    torch.testing.assert_close(pool[:4], pool_v)  # visible rows first
    torch.testing.assert_close(pool[4:], pool_t)
    torch.testing.assert_close(bn[:4], bn_v)


def test_tslfn_standin_contract():
    torch.manual_seed(0)
    net = TSLFNStandIn(low_dim=6, class_num=5, drop=0.5, pool_dim=8)
    x1, x2 = _images(4, 1), _images(4, 2)
    logits, feats = net(x1, x2)
    assert len(logits) == len(feats) == 6
    assert all(o.shape == (8, 5) for o in logits) and all(f.shape == (8, 6) for f in feats)
    torch.testing.assert_close(torch.stack([f.norm(dim=1) for f in feats]), torch.ones(6, 8))
    net.eval()
    with torch.no_grad():
        x, y = net(x1, x2, 0)
        xv, yv = net(x1, x2, 1)
        xt, yt = net(x1, x2, 2)
    assert x.shape == (8, 6 * 8) and y.shape == (8, 6 * 6) and xv.shape == (4, 48)
    torch.testing.assert_close(y[:4], yv)
    torch.testing.assert_close(y[4:], yt)
    torch.testing.assert_close(x[4:], xt)


def _branch_grad(module: torch.nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def test_agw_gradients_reach_both_modality_branches():
    torch.manual_seed(0)
    net = AGWStandIn(class_num=4)
    label1 = paired_labels([0, 1], 2)
    feat, _ = net(_images(4, 1), _images(4, 2))
    loss, _ = agw.MMTCriterion(margin=5.0)(feat, torch.cat((label1, label1)))
    loss.backward()
    assert float(loss.detach()) > 0
    assert _branch_grad(net.visible_module) > 0 and _branch_grad(net.thermal_module) > 0


def test_caj_gradients_reach_both_views_and_the_thermal_branch():
    torch.manual_seed(0)
    net = CAJStandIn(class_num=4)
    label1 = paired_labels([0, 1], 2)
    input10, input11, input2 = (_images(4, s).requires_grad_() for s in (1, 2, 3))
    feat, out0 = net(torch.cat((input10, input11)), input2)
    assert feat.shape[0] == 12 and out0.shape == (12, 4)
    loss, _ = caj.MMTCriterion(margin=5.0)(feat, torch.cat((label1, label1, label1)))
    loss.backward()
    for x in (input10, input11, input2):
        assert float(x.grad.abs().sum()) > 0
    assert _branch_grad(net.visible_module) > 0 and _branch_grad(net.thermal_module) > 0


def test_tslfn_parts_gradients_reach_both_streams():
    torch.manual_seed(0)
    net = TSLFNStandIn(low_dim=6, class_num=4)
    label1 = paired_labels([0, 1], 2)
    _, feats = net(_images(4, 1), _images(4, 2))
    crit = tslfn.MMTCriterion(margin=1.0)
    losses = crit.parts(feats, label1, label1)
    for k, part in enumerate(feats):  # same as one call per part, as train.py writes it
        het = part.chunk(2, 0)
        assert torch.equal(losses[k], crit(het[0], het[1], label1, label1))
    sum(losses).backward()
    assert _branch_grad(net.visible_net) > 0 and _branch_grad(net.thermal_net) > 0


@pytest.mark.parametrize("as_tensor", [False, True])
def test_agw_training_step_as_in_train_py(as_tensor):
    """AGW's train() body with the two edits of examples/adapters/agw.md (MAG + criterion)."""
    torch.manual_seed(0)
    net = AGWStandIn(class_num=3)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    criterion_id = torch.nn.CrossEntropyLoss()
    criterion_tri = agw.MMTCriterion(correct_as_tensor=as_tensor)
    aug = ModalityAugment(p=0.5, generator=0)
    correct, total = 0, 0
    for step in range(2):
        label1 = label2 = paired_labels([0, 1, 2], 2)
        input1, input2 = _images(6, 10 + step), _images(6, 20 + step)
        labels = torch.cat((label1, label2), 0)
        input1, input2 = aug(input1, input2)
        feat, out0, = net(input1, input2)
        loss_id = criterion_id(out0, labels)
        loss_tri, batch_acc = criterion_tri(feat, labels)
        correct += batch_acc / 2
        _, predicted = out0.max(1)
        correct += predicted.eq(labels).sum().item() / 2
        loss = loss_id + loss_tri
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += labels.size(0)
        assert math.isfinite(loss.item())
    assert 0.0 <= float("{:.2f}".format(100.0 * correct / total)) <= 100.0


def test_caj_training_step_as_in_train_ext_py():
    """CAJ's train() body with the edits of examples/adapters/caj.md."""
    torch.manual_seed(0)
    net = CAJStandIn(class_num=3)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    criterion_id = torch.nn.CrossEntropyLoss()
    criterion_tri = caj.MMTCriterion(correct_alpha=1.0)
    aug = ModalityAugment(p=0.5, generator=0)
    label1 = label2 = paired_labels([0, 1, 2], 2)
    input10, input11, input2 = _images(6, 1), _images(6, 2), _images(6, 3)
    labels = torch.cat((label1, label1, label2), 0)
    input10, input11, input2 = caj.augment_caj_batch(aug, input10, input11, input2)
    input1 = torch.cat((input10, input11,), 0)
    feat, out0, = net(input1, input2)
    n = out0.shape[0] // 3
    assert out0.narrow(0, 0, n).shape == out0.narrow(0, 2 * n, n).shape == (6, 3)
    loss_tri, batch_acc = criterion_tri(feat, labels)
    loss = criterion_id(out0, labels) + loss_tri
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert math.isfinite(loss.item()) and 0 <= batch_acc <= 18


def test_tslfn_training_step_as_in_train_py():
    """TSLFN's train() body with criterion_het replaced in place (examples/adapters/tslfn.md)."""
    torch.manual_seed(0)
    net = TSLFNStandIn(low_dim=6, class_num=3)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    criterion = torch.nn.CrossEntropyLoss()
    criterion_het = tslfn.MMTCriterion()
    aug = ModalityAugment(p=0.5, generator=0)
    label1 = label2 = paired_labels([0, 1], 3)
    input1, input2 = aug(_images(6, 1), _images(6, 2))
    labels = torch.cat((label1, label2), 0)
    outputs, feat = net(input1, input2)
    losses = []
    for k in range(6):
        het = feat[k].chunk(2, 0)
        losses.append(criterion(outputs[k], labels) + 0.5 * criterion_het(het[0], het[1], label1, label2))
    optimizer.zero_grad()
    torch.autograd.backward(losses, [torch.tensor(1.0)] * 6)
    optimizer.step()
    assert all(math.isfinite(float(v.detach())) for v in losses)


# --------------------------------------------------------------------------- the guides


GUIDES = Path(__file__).resolve().parents[1] / "examples" / "adapters"


@pytest.mark.parametrize("repo", ["agw", "caj", "tslfn"])
def test_guides_name_the_torch_requirement_and_existing_adapter_names(repo):
    text = (GUIDES / f"{repo}.md").read_text()
    pyproject = (GUIDES.parents[1] / "pyproject.toml").read_text()
    (required,) = re.findall(r'"torch>=([0-9.]+)"', pyproject)
    assert re.findall(r"PyTorch >= ([0-9.]+)", text) == [required]
    module = {"agw": agw, "caj": caj, "tslfn": tslfn}[repo]
    names = set(re.findall(rf"mmt_{repo}\.(\w+)", text))
    assert names and all(hasattr(module, n) for n in names), names
    assert "ModalityAugment(p=0.5)" in text
