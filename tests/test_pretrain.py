"""Tests of MMGL pre-training (mag_mmt.pretrain), against slow loop references written here."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mag_mmt.data.records import ReIDData, Sample
from mag_mmt.functional import (
    cycle_consistent_pairs,
    cycle_infonce_loss,
    hamming_distances,
    jigsaw_shuffle,
    jigsaw_unshuffle,
    min_hamming_distance,
    permutation_set,
)
from mag_mmt.pretrain import (
    MMGLPretrainer,
    feature_maps,
    load_pretrained,
    permutation_loss,
    pretrain_step,
    save_pretrained,
)
from mag_mmt.training import pretrain


@pytest.fixture(autouse=True)
def _one_thread():
    """Every tensor here is tiny: intra-op threads only add overhead (badly so on a busy CPU)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- references


def ref_hamming(p: list[int], q: list[int]) -> int:
    return sum(a != b for a, b in zip(p, q))


def ref_min_hamming(perms: list[list[int]]) -> int:
    return min(ref_hamming(p, q) for p, q in itertools.combinations(perms, 2))


def ref_shuffle(x: torch.Tensor, perms: list[list[int]], gh: int, gw: int) -> torch.Tensor:
    """Tile by tile: output tile j (row-major) of image b = input tile perms[b][j]."""
    b, c, h, w = x.shape
    ph, pw = h // gh, w // gw
    out = torch.empty_like(x)
    for n in range(b):
        for j in range(gh * gw):
            src = perms[n][j]
            sr, sc = divmod(src, gw)
            dr, dc = divmod(j, gw)
            out[n, :, dr * ph : (dr + 1) * ph, dc * pw : (dc + 1) * pw] = x[
                n, :, sr * ph : (sr + 1) * ph, sc * pw : (sc + 1) * pw
            ]
    return out


def ref_cycle(a: torch.Tensor, b: torch.Tensor) -> tuple[list[list[int]], list[list[bool]]]:
    matches, masks = [], []
    for n in range(a.shape[0]):
        sim = a[n].double() @ b[n].double().T
        row_m, row_k = [], []
        for i in range(a.shape[1]):
            j = int(sim[i].argmax())
            back = int(sim[:, j].argmax())
            row_m.append(j)
            row_k.append(back == i)
        matches.append(row_m)
        masks.append(row_k)
    return matches, masks


def ref_infonce(a, b, match, mask, temperature, weights, negatives):
    """Loop over consistent pairs; negatives from the pair's own images or the whole batch."""
    total, count = torch.zeros((), dtype=torch.float64), 0
    bsz, n, _ = a.shape
    a, b = a.double(), b.double()
    for p in range(bsz):
        for i in range(n):
            if not mask[p][i]:
                continue
            j = match[p][i]
            anchor_a, anchor_b = a[p, i], b[p, j]
            if negatives == "pair":
                cand_b, cand_a, pos_b, pos_a = b[p], a[p], j, i
            else:
                cand_b, cand_a = b.reshape(-1, b.shape[-1]), a.reshape(-1, a.shape[-1])
                pos_b, pos_a = p * b.shape[1] + j, p * n + i
            l_ab = -torch.log_softmax(cand_b @ anchor_a / temperature, 0)[pos_b]
            l_ba = -torch.log_softmax(cand_a @ anchor_b / temperature, 0)[pos_a]
            total = total + weights[0] * l_ab + weights[1] * l_ba
            count += 1
    return total / max(count, 1)


class TinyBackbone(nn.Module):
    """Stand-in with the MMGL interface: a specific conv per modality, a shared conv."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.vis = nn.Conv2d(3, width, 3, stride=2, padding=1)
        self.th = nn.Conv2d(3, width, 3, stride=2, padding=1)
        self.shared = nn.Sequential(nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU())

    def forward_feature_map(self, x1, x2=None, modal=0):
        if modal == 0:
            return self.shared(torch.cat([self.vis(x1), self.th(x2)]))
        return self.shared(self.vis(x1) if modal == 1 else self.th(x2))


# ----------------------------------------------------------------------------- permutation set


@given(
    num_patches=st.integers(1, 5),
    size_frac=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=30)
def test_permutation_set_is_greedy_max_min(num_patches, size_frac, seed):
    total = math.factorial(num_patches)
    size = 1 + int(size_frac * (min(total, 30) - 1))
    perms = permutation_set(num_patches, size, seed)
    rows = perms.tolist()
    assert perms.dtype == torch.int64 and perms.shape == (size, num_patches)
    assert all(sorted(r) == list(range(num_patches)) for r in rows)
    assert len({tuple(r) for r in rows}) == size  # distinct
    assert rows[0] == list(range(num_patches))
    # greedy max-min over the whole S_n: each pick is as far as any candidate could be
    every = [list(p) for p in itertools.permutations(range(num_patches))]
    for k in range(1, size):
        chosen = rows[:k]
        got = min(ref_hamming(rows[k], c) for c in chosen)
        best = max(min(ref_hamming(p, c) for c in chosen) for p in every if p not in chosen)
        assert got == best
    if size >= 2:
        assert min_hamming_distance(perms) == ref_min_hamming(rows)
    assert torch.equal(perms, permutation_set(num_patches, size, seed))  # deterministic


def test_permutation_set_known_distances_and_sampling():
    assert min_hamming_distance(permutation_set(4, 4)) == 4  # a Latin square exists
    p24 = permutation_set(4, 24)
    assert {tuple(r) for r in p24.tolist()} == set(itertools.permutations(range(4)))
    p9 = permutation_set(9, 40, seed=3, num_candidates=3000)
    rows = p9.tolist()
    assert len({tuple(r) for r in rows}) == 40
    assert all(sorted(r) == list(range(9)) for r in rows)
    reported = min_hamming_distance(p9)
    assert reported == ref_min_hamming(rows) and reported >= 6
    assert torch.equal(p9, permutation_set(9, 40, seed=3, num_candidates=3000))
    assert not torch.equal(p9, permutation_set(9, 40, seed=4, num_candidates=3000))
    d = hamming_distances(p9)
    assert torch.equal(d, d.T) and bool((d.diagonal() == 0).all())


@pytest.mark.parametrize(
    "args, match",
    [((0, 3), "num_patches"), ((3, 0), "size"), ((3, 7), "exceeds"), ((4, 2.5), "size")],
)
def test_permutation_set_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        permutation_set(*args)
    with pytest.raises(ValueError, match="num_candidates"):
        permutation_set(9, 50, num_candidates=10)


# ----------------------------------------------------------------------------- jigsaw


@given(
    b=st.integers(1, 3),
    c=st.integers(1, 3),
    gh=st.integers(1, 3),
    gw=st.integers(1, 3),
    ph=st.integers(1, 3),
    pw=st.integers(1, 3),
    seed=st.integers(0, 1000),
)
def test_jigsaw_matches_reference_and_inverts(b, c, gh, gw, ph, pw, seed):
    g = torch.Generator().manual_seed(seed)
    n = gh * gw
    k = min(math.factorial(n), 6)
    perm_set = permutation_set(n, k, seed)
    idx = torch.randint(k, (b,), generator=g)
    x = torch.randn(b, c, gh * ph, gw * pw, generator=g)
    out = jigsaw_shuffle(x, idx, perm_set, (gh, gw))
    assert torch.equal(out, ref_shuffle(x, perm_set[idx].tolist(), gh, gw))
    assert torch.equal(jigsaw_unshuffle(out, idx, perm_set, (gh, gw)), x)
    assert torch.equal(jigsaw_shuffle(jigsaw_unshuffle(x, idx, perm_set, (gh, gw)), idx, perm_set, (gh, gw)), x)


def test_jigsaw_tiles_move_where_the_permutation_says():
    perm_set = permutation_set(6, 10)
    x = torch.arange(6.0).reshape(1, 1, 2, 3).repeat_interleave(4, 2).repeat_interleave(5, 3)
    x = x.repeat(10, 2, 1, 1)  # tile t holds the value t, 10 images
    idx = torch.arange(10)
    out = jigsaw_shuffle(x, idx, perm_set, (2, 3))
    tile_values = out[:, 0, ::4, ::5].reshape(10, 6)
    assert torch.equal(tile_values.long(), perm_set)


def test_same_permutation_for_both_images_of_a_pair():
    g = torch.Generator().manual_seed(0)
    perm_set = permutation_set(9, 20)
    idx = torch.randint(20, (5,), generator=g)
    rgb = torch.rand(5, 3, 12, 9, generator=g)
    ir = rgb.mean(1, keepdim=True) * 2 - 1  # a pixel-wise function of the RGB image
    s_rgb, s_ir = jigsaw_shuffle((rgb, ir), idx, perm_set, (3, 3))
    assert torch.allclose(s_ir, s_rgb.mean(1, keepdim=True) * 2 - 1)
    assert not torch.equal(s_rgb, rgb)  # something moved
    # different sizes per batch are fine too; the permutation is still shared
    big = F.interpolate(rgb, scale_factor=2, mode="nearest")
    s_rgb2, s_big = jigsaw_shuffle([rgb, big], idx, perm_set, (3, 3))
    assert torch.equal(F.interpolate(s_rgb2, scale_factor=2, mode="nearest"), s_big)


def test_jigsaw_remainder_modes():
    perm_set = permutation_set(4, 5)
    idx = torch.tensor([1, 4])
    x = torch.randn(2, 3, 9, 7)
    with pytest.raises(ValueError, match="not divisible"):
        jigsaw_shuffle(x, idx, perm_set, (2, 2))
    kept = jigsaw_shuffle(x, idx, perm_set, (2, 2), remainder="keep")
    assert kept.shape == x.shape
    # centred 8x6 region at (0, 0)..; border row 8 and column 6 untouched
    assert torch.equal(kept[..., 8, :], x[..., 8, :]) and torch.equal(kept[..., :, 6], x[..., :, 6])
    assert torch.equal(jigsaw_unshuffle(kept, idx, perm_set, (2, 2), remainder="keep"), x)
    cropped = jigsaw_shuffle(x, idx, perm_set, (2, 2), remainder="crop")
    assert cropped.shape == (2, 3, 8, 6)
    assert torch.equal(jigsaw_unshuffle(cropped, idx, perm_set, (2, 2)), x[..., 0:8, 0:6])
    y = torch.randn(1, 1, 11, 11)  # remainder 2 per side with a 3x3 grid: one border row/column each side
    p9 = permutation_set(9, 4)
    kept = jigsaw_shuffle(y, torch.tensor([3]), p9, (3, 3), remainder="keep")
    for border in (0, 10):
        assert torch.equal(kept[..., border, :], y[..., border, :])
        assert torch.equal(kept[..., :, border], y[..., :, border])
    inner = jigsaw_shuffle(y[..., 1:10, 1:10], torch.tensor([3]), p9, (3, 3))
    assert torch.equal(kept[..., 1:10, 1:10], inner)
    assert not torch.equal(inner, y[..., 1:10, 1:10])


def test_jigsaw_is_differentiable():
    perm_set = permutation_set(4, 5)
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    w = torch.randn(2, 3, 4, 4)
    (jigsaw_shuffle(x, torch.tensor([1, 2]), perm_set, (2, 2)) * w).sum().backward()
    assert torch.equal(x.grad, jigsaw_unshuffle(w, torch.tensor([1, 2]), perm_set, (2, 2)))


def test_jigsaw_rejects_bad_input():
    perm_set = permutation_set(4, 5)
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"perm_indices must lie in \[0, 5\)"):
        jigsaw_shuffle(x, torch.tensor([0, 5]), perm_set, (2, 2))
    with pytest.raises(ValueError, match="has 9"):
        jigsaw_shuffle(x, torch.tensor([0, 1]), perm_set, (3, 3))
    with pytest.raises(ValueError, match="perm_indices has 3"):
        jigsaw_shuffle(x, torch.tensor([0, 1, 2]), perm_set, (2, 2))
    with pytest.raises(ValueError, match="integer dtype"):
        jigsaw_shuffle(x, torch.tensor([0.0, 1.0]), perm_set, (2, 2))
    with pytest.raises(ValueError, match="grid"):
        jigsaw_shuffle(x, torch.tensor([0, 1]), perm_set, (0, 2))
    with pytest.raises(ValueError, match="smaller than the grid"):
        jigsaw_shuffle(torch.randn(2, 3, 1, 4), torch.tensor([0, 1]), perm_set, (2, 2), remainder="keep")
    with pytest.raises(ValueError, match="remainder"):
        jigsaw_shuffle(x, torch.tensor([0, 1]), perm_set, (2, 2), remainder="pad")
    with pytest.raises(ValueError, match=r"images\[1\]"):
        jigsaw_shuffle((x, torch.randn(3, 3, 4, 4)), torch.tensor([0, 1]), perm_set, (2, 2))


# ----------------------------------------------------------------------------- cycle consistency


def test_cycle_finds_planted_correspondences():
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(4, 12, 32, generator=g), dim=-1)
    perm = torch.stack([torch.randperm(12, generator=g) for _ in range(4)])  # b_j = a_perm[j]
    b = F.normalize(a.gather(1, perm.unsqueeze(2).expand(-1, -1, 32)) + 0.05 * torch.randn(4, 12, 32, generator=g), dim=-1)
    match, mask = cycle_consistent_pairs(a, b)
    assert torch.equal(match, perm.argsort(dim=1))  # a_i corresponds to b_{perm^-1(i)}
    assert bool(mask.all())


def test_cycle_rejects_broken_cycles():
    # a0 -> b0 (its nearest), but b0's nearest is a1: the cycle from a0 does not return
    a = F.normalize(torch.tensor([[[1.0, 0.0], [0.9, 0.436]]]), dim=-1)
    b = F.normalize(torch.tensor([[[0.8, 0.6], [0.0, -1.0]]]), dim=-1)
    match, mask = cycle_consistent_pairs(a, b)
    assert match.tolist() == [[0, 0]]
    assert mask.tolist() == [[False, True]]
    # planted pairs with two IR patches corrupted to copy a third patch: those break
    g = torch.Generator().manual_seed(1)
    x = F.normalize(torch.randn(1, 8, 16, generator=g), dim=-1)
    y = x.clone()
    y[0, 2] = F.normalize(x[0, 5] + 0.01 * torch.randn(16, generator=g), dim=-1)
    y[0, 6] = F.normalize(x[0, 5] + 0.02 * torch.randn(16, generator=g), dim=-1)
    _, mask = cycle_consistent_pairs(x, y)
    assert mask[0, [0, 1, 3, 4, 7]].all()
    assert mask[0].sum() <= 6 and not bool(mask[0, 2] & mask[0, 6])


@given(b=st.integers(1, 3), n=st.integers(1, 7), m=st.integers(1, 7), d=st.integers(1, 6), seed=st.integers(0, 999))
def test_cycle_matches_reference(b, n, m, d, seed):
    g = torch.Generator().manual_seed(seed)
    a, bb = torch.randn(b, n, d, generator=g), torch.randn(b, m, d, generator=g)
    match, mask = cycle_consistent_pairs(a, bb)
    rm, rk = ref_cycle(a, bb)
    assert match.tolist() == rm and mask.tolist() == rk


# ----------------------------------------------------------------------------- InfoNCE


@pytest.mark.parametrize("negatives", ["pair", "batch"])
@given(b=st.integers(1, 3), n=st.integers(1, 6), m=st.integers(1, 6), seed=st.integers(0, 999),
       t=st.sampled_from([0.07, 0.5, 1.0]), w=st.sampled_from([(0.5, 0.5), (1.0, 0.0), (0.2, 2.0)]))
@settings(max_examples=25)
def test_infonce_matches_reference(negatives, b, n, m, seed, t, w):
    g = torch.Generator().manual_seed(seed)
    a = F.normalize(torch.randn(b, n, 5, generator=g), dim=-1)
    bb = F.normalize(torch.randn(b, m, 5, generator=g), dim=-1)
    match, mask = cycle_consistent_pairs(a, bb)
    mask = mask & (torch.rand(b, n, generator=g) < 0.8)  # also arbitrary masks via pairs=
    got = cycle_infonce_loss(a, bb, temperature=t, weights=w, negatives=negatives, pairs=(match, mask))
    want = ref_infonce(a, bb, match.tolist(), mask.tolist(), t, w, negatives)
    assert torch.allclose(got.double(), want, atol=1e-5, rtol=1e-5)


def test_infonce_no_pairs_is_zero_with_gradient_and_rewards_agreement():
    a = F.normalize(torch.randn(2, 4, 8), dim=-1).requires_grad_(True)
    b = F.normalize(torch.randn(2, 4, 8), dim=-1)
    match, mask = cycle_consistent_pairs(a, b)
    loss = cycle_infonce_loss(a, b, pairs=(match, torch.zeros_like(mask)))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(a.grad, torch.zeros_like(a))
    x = F.normalize(torch.randn(2, 6, 16), dim=-1)
    easy = cycle_infonce_loss(x, x.clone())
    hard = cycle_infonce_loss(x, F.normalize(x + 0.8 * torch.randn_like(x), dim=-1))
    assert easy < hard
    with pytest.raises(ValueError, match="temperature"):
        cycle_infonce_loss(x, x, temperature=0.0)
    with pytest.raises(ValueError, match="negatives"):
        cycle_infonce_loss(x, x, negatives="all")
    with pytest.raises(ValueError, match="agree in B and D"):
        cycle_infonce_loss(x, torch.randn(2, 6, 15))


def test_permutation_loss_is_shared_ce():
    la, lb = torch.randn(4, 7), torch.randn(4, 7)
    t = torch.tensor([0, 3, 6, 1])
    loss, acc = permutation_loss([la, lb], t)
    want = (F.cross_entropy(la, t) + F.cross_entropy(lb, t)) / 2
    assert torch.allclose(loss, want)
    assert acc == ((la.argmax(1) == t).float().sum() + (lb.argmax(1) == t).float().sum()) / 8


# ----------------------------------------------------------------------------- pretrainer


def _pretrainer(model, **kw):
    kw.setdefault("grid", (2, 2))
    kw.setdefault("num_permutations", 8)
    kw.setdefault("probe_size", (16, 8))
    kw.setdefault("head_hidden", 32)
    kw.setdefault("proj_hidden", 32)
    kw.setdefault("proj_dim", 16)
    return MMGLPretrainer(model, **kw)


def test_gradients_reach_the_backbone():
    torch.manual_seed(0)
    model = TinyBackbone()
    pre = _pretrainer(model)
    out = pre(torch.rand(4, 3, 16, 8), torch.rand(4, 3, 16, 8))
    assert torch.isfinite(out.loss) and out.loss.requires_grad
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # each objective alone also reaches the backbone
    for kw in ({"local_weight": 0.0}, {"global_weight": 0.0}):
        model.zero_grad()
        _pretrainer(model, **kw)(torch.rand(4, 3, 16, 8), torch.rand(4, 3, 16, 8)).loss.backward()
        assert model.vis.weight.grad.abs().sum() > 0 and model.th.weight.grad.abs().sum() > 0


def test_pretrainer_uses_given_permutations_for_both_modalities():
    model = TinyBackbone()
    pre = _pretrainer(model, local_weight=0.0)
    rgb, ir = torch.rand(3, 3, 16, 8), torch.rand(3, 3, 16, 8)
    idx = torch.tensor([0, 5, 7])
    out = pre(rgb, ir, perm_indices=idx)
    s_rgb, s_ir = jigsaw_shuffle((rgb, ir), idx, pre.perm_set, (2, 2))
    f_rgb, f_ir = feature_maps(model, s_rgb, s_ir)
    logits = [pre.perm_head(f.mean((2, 3))) for f in (f_rgb, f_ir)]
    assert torch.allclose(out.global_loss, permutation_loss(logits, idx)[0])
    assert pre.min_hamming == min_hamming_distance(pre.perm_set)


def test_backbone_sees_each_modality_shuffled_alike():
    class Spy(TinyBackbone):
        def forward_feature_map(self, x1, x2=None, modal=0):
            self.seen = (x1.clone(), x2.clone(), modal)
            return super().forward_feature_map(x1, x2, modal)

    model = Spy()
    pre = _pretrainer(model)
    rgb, ir = torch.rand(3, 3, 16, 8), torch.rand(3, 3, 16, 8)
    idx = torch.tensor([1, 2, 7])
    pre(rgb, ir, perm_indices=idx)
    x1, x2, modal = model.seen
    assert modal == 0
    assert torch.equal(x1, jigsaw_shuffle(rgb, idx, pre.perm_set, (2, 2)))
    assert torch.equal(x2, jigsaw_shuffle(ir, idx, pre.perm_set, (2, 2)))
    m_rgb, m_ir = feature_maps(model, x1, x2)
    assert torch.allclose(m_rgb, model.shared(model.vis(x1)))
    assert torch.allclose(m_ir, model.shared(model.th(x2)))


def test_loss_decreases_on_a_tiny_batch():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    rgb, ir = torch.rand(8, 3, 16, 8, generator=g), torch.rand(8, 3, 16, 8, generator=g)
    pre = _pretrainer(TinyBackbone(width=16))
    opt = torch.optim.Adam(pre.parameters(), lr=3e-3)
    idx = torch.arange(8)
    first = pre(rgb, ir, perm_indices=idx).loss.item()
    for _ in range(40):
        opt.zero_grad()
        pre(rgb, ir, perm_indices=idx).loss.backward()
        opt.step()
    last = pre(rgb, ir, perm_indices=idx).loss.item()
    assert last < 0.7 * first
    # pretrain_step with random permutations runs and returns detached 0-d tensors
    gen = torch.Generator().manual_seed(1)
    out = pretrain_step(pre, opt, rgb, ir, generator=gen)
    assert all(t.dim() == 0 and not t.requires_grad for t in out)


def test_pretrainer_rejects_bad_config():
    with pytest.raises(ValueError, match="num_permutations"):
        _pretrainer(TinyBackbone(), num_permutations=1)
    with pytest.raises(ValueError, match="exceeds"):
        _pretrainer(TinyBackbone(), num_permutations=25)
    with pytest.raises(ValueError, match="temperature"):
        _pretrainer(TinyBackbone(), temperature=-1.0)
    with pytest.raises(TypeError, match="forward_feature_map"):
        _pretrainer(nn.Linear(3, 3))
    pre = _pretrainer(TinyBackbone())
    with pytest.raises(ValueError, match="same number of pairs"):
        pre(torch.rand(2, 3, 16, 8), torch.rand(3, 3, 16, 8))


# ----------------------------------------------------------------------------- real models


def test_feature_map_adapter_matches_small_cnn_and_swin():
    from mag_mmt.models import SWIN_TINY_TEST_CONFIG, DualPathSwin, SmallCNN

    torch.manual_seed(0)
    x1, x2 = torch.rand(2, 3, 64, 32), torch.rand(3, 3, 64, 32)
    for model in (
        SmallCNN(5, widths=(8, 8, 16, 16, 32), pool_p=1.0),
        SmallCNN(5, widths=(8, 8, 16, 16, 32), share_point="F1"),
        DualPathSwin(5, img_size=(64, 32), **SWIN_TINY_TEST_CONFIG),
    ):
        model.eval()
        with torch.no_grad():
            m1, m2 = feature_maps(model, x1, x2)
            assert m1.shape[0] == 2 and m2.shape[0] == 3 and m1.dim() == 4
            pooled = model.pool(torch.cat([m1, m2]))
            assert torch.allclose(pooled, model.forward_features(x1, x2, 0), atol=1e-5)


def test_mmgl_with_small_cnn_trains_and_checkpoint_loads(tmp_path):
    from mag_mmt.models import build_model

    torch.manual_seed(0)
    model = build_model("small-cnn", num_classes=4, widths=(8, 8, 16, 16, 32))
    pre = _pretrainer(model, grid=(3, 3), num_permutations=10, probe_size=(48, 24))
    assert pre.feature_channels == 32
    rgb, ir = torch.rand(4, 3, 48, 24), torch.rand(4, 3, 48, 24)
    opt = torch.optim.SGD(pre.parameters(), lr=0.01, momentum=0.9)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = pretrain_step(pre, opt, rgb, ir)
    assert torch.isfinite(out.loss)
    assert not torch.equal(before["visible.0.0.weight"], model.state_dict()["visible.0.0.weight"])
    assert not torch.equal(before["thermal.0.0.weight"], model.state_dict()["thermal.0.0.weight"])
    path = save_pretrained(tmp_path / "mmgl.pt", pre, model_name="small-cnn", history=[{"loss": 1.0}])
    fresh = build_model("small-cnn", num_classes=9, widths=(8, 8, 16, 16, 32))
    report = load_pretrained(fresh, path)
    assert report["skipped"] == ["head.classifier.weight"]  # 4 vs 9 classes
    assert not report["missing"] and not report["unexpected"]
    for k, v in fresh.state_dict().items():
        if k != "head.classifier.weight":
            assert torch.equal(v, model.state_dict()[k]), k
    with pytest.raises(ValueError, match="does not match"):
        load_pretrained(fresh, path, strict=True)
    from mag_mmt.checkpoint import load_checkpoint

    state = load_checkpoint(path, kind="pretrain")
    assert state["meta"]["model_name"] == "small-cnn" and state["meta"]["grid"] == [3, 3]
    assert torch.equal(state["perm_set"], pre.perm_set)


def _toy_data(n_ids: int = 3, per: int = 3) -> ReIDData:
    train = [Sample(f"toy://{i}/{m}/{k}", i, 1 + 2 * m, m) for i in range(n_ids) for m in (0, 1) for k in range(per)]

    def loader(s: Sample) -> torch.Tensor:
        g = torch.Generator().manual_seed(hash(s.path) % 2**31)
        return torch.randint(0, 256, (3, 20, 10), dtype=torch.uint8, generator=g)

    return ReIDData("toy", train, [], [], loader=loader)


@pytest.mark.parametrize("pairing", ["random", "identity"])
def test_pretrain_loop_runs_and_reports_history(pairing):
    torch.manual_seed(0)
    model = TinyBackbone()
    seen = []
    result = pretrain(
        model, _toy_data(), epochs=2, batch_size=4, image_size=(16, 8), device="cpu",
        pairing=pairing, optimizer="adamw", lr=1e-3, callback=seen.append,
        grid=(2, 2), num_permutations=6, head_hidden=16, proj_hidden=16, proj_dim=8,
    )
    assert len(result.history) == 2 and seen == result.history
    for entry in result.history:
        assert all(math.isfinite(v) for v in entry.values())
        assert 0.0 <= entry["cycle_fraction"] <= 1.0 and 0.0 <= entry["perm_accuracy"] <= 1.0
    assert result.pretrainer.model is model
    assert result.meta["method"] == "mmgl" and result.meta["num_permutations"] == 6
    with pytest.raises(ValueError, match="epochs"):
        pretrain(model, _toy_data(), epochs=0)
    with pytest.raises(ValueError, match="batch_size=100"):
        pretrain(model, _toy_data(), epochs=1, batch_size=100)
    only_vis = ReIDData("v", [s for s in _toy_data().train if s.modality == 0], [], [])
    with pytest.raises(ValueError, match="visible and thermal"):
        pretrain(model, only_vis, epochs=1)


def test_pretrain_resumed_after_a_kill_gives_the_same_weights(tmp_path):
    from mag_mmt.errors import UserError

    kw = dict(batch_size=4, image_size=(16, 8), device="cpu", lr=0.01, grid=(2, 2), num_permutations=6,
              head_hidden=16, proj_hidden=16, proj_dim=8, seed=1)

    def fresh():
        torch.manual_seed(0)
        return TinyBackbone()

    full = pretrain(fresh(), _toy_data(), 2, checkpoint=tmp_path / "a.pt", **kw)

    class Killed(Exception):
        pass

    def kill(_entry):
        raise Killed  # after epoch 1's checkpoint is written

    with pytest.raises(Killed):
        pretrain(fresh(), _toy_data(), 2, checkpoint=tmp_path / "b.pt", callback=kill, **kw)
    resumed = pretrain(fresh(), _toy_data(), 2, checkpoint=tmp_path / "b.pt", resume=True, **kw)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    for key, value in full.pretrainer.state_dict().items():
        assert torch.equal(value, resumed.pretrainer.state_dict()[key]), key
    with pytest.raises(UserError, match=r"lr: 0.01 -> 0.02"):
        pretrain(fresh(), _toy_data(), 3, checkpoint=tmp_path / "b.pt", resume=True, **{**kw, "lr": 0.02})


def test_run_pretraining_writes_a_checkpoint_that_train_init_loads(tmp_path):
    from mag_mmt.checkpoint import load_checkpoint
    from mag_mmt.data.synthetic import make_synthetic
    from mag_mmt.training import TrainConfig, build_model_for, load_init
    from mag_mmt.training import run_pretraining

    data = make_synthetic("demo", num_identities=4, num_train_identities=2, images_per_camera=2, size=(32, 16))
    cfg = TrainConfig(data="synthetic", model="small-cnn", share_point="F3", out=str(tmp_path), device="cpu")
    logs: list[str] = []
    path = run_pretraining(cfg, data, epochs=1, batch_size=8, lr=0.01, progress=False, log=logs.append,
                           grid=(2, 2), num_permutations=6, head_hidden=16, proj_hidden=16, proj_dim=8)
    assert path == tmp_path / "pretrain.pt" and (tmp_path / "pretrain_history.json").is_file()
    assert len(logs) == 1 and "mmgl epoch 1/1" in logs[0]
    state = load_checkpoint(path, kind="pretrain")
    assert state["meta"]["model_name"] == "small-cnn" and state["config"]["model"] == "small-cnn"
    assert len(state["history"]) == 1
    fresh = build_model_for(cfg, 7)  # another number of identities
    info = load_init(fresh, str(path))
    assert "head.classifier.weight" not in info["loaded"] and not info["unexpected"]
    assert torch.equal(fresh.state_dict()["visible.0.0.weight"], state["model"]["visible.0.0.weight"])
