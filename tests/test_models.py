"""Reference models: shapes, real sharing, the AGW contract, torchvision weight loading."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.models.swin_transformer import SwinTransformer

from mag_mmt.models import (
    SHARE_POINTS,
    SWIN_T_CONFIG,
    SWIN_TINY_TEST_CONFIG,
    BNNeckHead,
    DualPathSwin,
    SmallCNN,
    build_model,
    gem_pool,
    load_swin_state_dict,
    parse_share_point,
)

SIZE = (64, 32)
ALL_SHARE_POINTS = sorted(SHARE_POINTS)


def tiny_swin(num_classes: int = 7, share_point: str | int = "F3", **kw) -> DualPathSwin:
    return DualPathSwin(num_classes, share_point, img_size=SIZE, **SWIN_TINY_TEST_CONFIG, **kw)


def small_cnn(num_classes: int = 7, share_point: str | int = "F3", **kw) -> SmallCNN:
    return SmallCNN(num_classes, share_point, widths=(8, 8, 16, 16, 32), **kw)


FACTORIES = {"swin": tiny_swin, "cnn": small_cnn}
FEATURE_DIM = {"swin": 8 * SWIN_TINY_TEST_CONFIG["embed_dim"], "cnn": 32}


def images(b: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 3, *SIZE, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ share points
def test_parse_share_point_table():
    assert [parse_share_point(f"F{k}") for k in range(1, 6)] == [0, 2, 3, 4, 5]
    assert parse_share_point("f3") == 3 and parse_share_point(1) == 1
    for bad in ("F0", "F6", "stage3", -1, 6, True, None, 2.0):
        with pytest.raises(ValueError, match="share_point"):
            parse_share_point(bad)


@pytest.mark.parametrize("kind", FACTORIES)
@pytest.mark.parametrize("share_point", [*ALL_SHARE_POINTS, 1])
def test_shapes_and_sharing_every_share_point(kind, share_point):
    torch.manual_seed(0)
    model = FACTORIES[kind](7, share_point)
    d = FEATURE_DIM[kind]
    feat, logits = model(images(3), images(2, 1))
    assert feat.shape == (5, d) and logits.shape == (5, 7)
    n_spec = parse_share_point(share_point)
    v_path, t_path = model.path(0), model.path(1)
    assert len(v_path) == len(t_path) == 5
    for i, (a, b) in enumerate(zip(v_path, t_path)):
        ids_a = {id(p) for p in a.parameters()}
        ids_b = {id(p) for p in b.parameters()}
        assert ids_a, f"unit {i} has no parameters"
        if i < n_spec:  # modality-specific: distinct modules, no parameter in common
            assert a is not b and not ids_a & ids_b
            # deep copies start from the same weights
            for pa, pb in zip(a.parameters(), b.parameters()):
                assert torch.equal(pa, pb)
        else:  # shared: the very same Parameter objects
            assert a is b and ids_a == ids_b
    n_params = sum(p.numel() for p in model.parameters())
    unit_params = [sum(p.numel() for p in u.parameters()) for u in v_path]
    head_params = sum(p.numel() for p in model.head.parameters())
    assert n_params == sum(unit_params) + sum(unit_params[:n_spec]) + head_params


@pytest.mark.parametrize("kind", FACTORIES)
def test_gradients_flow_only_through_the_used_path(kind):
    torch.manual_seed(0)
    model = FACTORIES[kind](5, "F3")
    feat, logits = model(images(4), None, modal=1)
    (feat.sum() + logits.sum()).backward()
    assert all(p.grad is not None for p in model.visible.parameters())
    assert all(p.grad is None for p in model.thermal.parameters())
    assert all(p.grad is not None for p in model.shared.parameters() if p.requires_grad)
    assert model.head.bottleneck.bias.grad is None  # BNNeck bias is frozen


# ------------------------------------------------------------------ AGW contract
@pytest.mark.parametrize("kind", FACTORIES)
def test_eval_rows_are_visible_then_thermal_and_match_single_paths(kind):
    torch.manual_seed(0)
    model = FACTORIES[kind](5, "F3").eval()
    # make the two specific paths differ so a swapped path would be caught
    with torch.no_grad():
        for p in model.thermal.parameters():
            p.add_(0.05 * torch.randn_like(p))
        x1, x2 = images(3), images(2, 1)
        both = model(x1, x2)
        v = model(x1, None, modal=1)
        t = model(None, x2, modal=2)
        t_wrong = model(x2, None, modal=1)
    assert both.shape == (5, FEATURE_DIM[kind])
    torch.testing.assert_close(both[:3], v, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(both[3:], t, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(t, t_wrong, atol=1e-4)


@pytest.mark.parametrize("kind", FACTORIES)
def test_eval_returns_bnneck_feature_or_pooled(kind):
    torch.manual_seed(0)
    model = FACTORIES[kind](5).eval()
    x1, x2 = images(2), images(2, 1)
    with torch.no_grad():
        feat = model.forward_features(x1, x2)
        bn, logits = model.forward_head(feat)
        out = model(x1, x2)
        model.eval_feature = "pool"
        pooled = model(x1, x2)
    torch.testing.assert_close(out, bn)
    torch.testing.assert_close(pooled, feat)
    torch.testing.assert_close(logits, bn @ model.head.classifier.weight.T)


@pytest.mark.parametrize("kind", FACTORIES)
def test_train_mode_returns_pooled_features_and_logits(kind):
    torch.manual_seed(0)
    model = FACTORIES[kind](6)
    x1, x2 = images(4), images(4, 1)
    feat, logits = model(x1, x2)
    model.eval()
    with torch.no_grad():
        pooled = model.forward_features(x1, x2)
    # drop-path / BN batch statistics differ in train mode, so compare the pooled *shape*
    # and that the logits are those of the BNNeck applied to feat
    assert feat.shape == pooled.shape
    model.train()
    bn = F.batch_norm(feat.detach(), None, None, model.head.bottleneck.weight,
                      model.head.bottleneck.bias, training=True, eps=model.head.bottleneck.eps)
    torch.testing.assert_close(logits.detach(), bn @ model.head.classifier.weight.T, atol=1e-5, rtol=1e-4)


def _reference_features(model, x: torch.Tensor, modality: int) -> torch.Tensor:
    """Obvious reference: run the path's units one by one, then pool by hand."""
    x = F.interpolate(x, size=model.input_size, mode="bilinear") if model.input_size and x.shape[-2:] != model.input_size else x
    for unit in model.path(modality):
        x = unit(x)
    flat = x.flatten(2)  # (B, C, h*w)
    p = model.pool.p
    if p == 1:
        return flat.mean(-1)
    return flat.clamp(min=model.pool.eps).pow(p).mean(-1).pow(1 / p)


@settings(max_examples=8, deadline=None)
@given(
    kind=st.sampled_from(sorted(FACTORIES)),
    share_point=st.sampled_from([*ALL_SHARE_POINTS, 1]),
    b1=st.integers(1, 3),
    b2=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_forward_features_matches_reference(kind, share_point, b1, b2, seed):
    torch.manual_seed(seed)
    model = FACTORIES[kind](4, share_point).eval()
    x1, x2 = images(b1, seed), images(b2, seed + 1)
    with torch.no_grad():
        got = model.forward_features(x1, x2)
        want = torch.cat([_reference_features(model, x1, 0), _reference_features(model, x2, 1)])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


@settings(max_examples=30, deadline=None)
@given(p=st.sampled_from([1.0, 2.0, 3.0]), b=st.integers(1, 3), c=st.integers(1, 4),
       h=st.integers(1, 4), w=st.integers(1, 4), seed=st.integers(0, 999))
def test_gem_pool_matches_loop(p, b, c, h, w, seed):
    x = torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed)).abs() + 0.1
    want = torch.tensor([[sum(float(x[i, j, r, s]) ** p for r in range(h) for s in range(w)) / (h * w)
                          for j in range(c)] for i in range(b)]) ** (1 / p)
    torch.testing.assert_close(gem_pool(x, p), want, atol=1e-5, rtol=1e-4)


def test_bnneck_head():
    head = BNNeckHead(8, 3)
    assert not head.bottleneck.bias.requires_grad and head.classifier.bias is None
    bn, logits = head(torch.randn(5, 8))
    assert bn.shape == (5, 8) and logits.shape == (5, 3)
    with pytest.raises(ValueError, match="num_classes"):
        BNNeckHead(8, 0)


def test_input_resize_and_size_checks():
    model = tiny_swin(3).eval()
    with torch.no_grad():
        a = model(torch.randn(2, 3, 96, 48), torch.randn(2, 3, 96, 48))  # resized to 64 x 32
    assert a.shape == (4, FEATURE_DIM["swin"])
    cnn = small_cnn(3)
    with pytest.raises(ValueError, match="same image size"):
        cnn(images(2), torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        cnn(torch.randn(2, 1, *SIZE), images(2))
    with pytest.raises(ValueError, match="4 dimensions"):
        cnn(torch.randn(3, *SIZE), images(2))
    with pytest.raises(ValueError, match="floating"):
        cnn(images(2).to(torch.uint8), images(2))
    with pytest.raises(ValueError, match="modal"):
        cnn(images(2), images(2), modal=3)
    with pytest.raises(TypeError, match="x2"):
        cnn(images(2), None, modal=0)
    with pytest.raises(ValueError, match="eval_feature"):
        small_cnn(3, eval_feature="l2")
    with pytest.raises(ValueError, match="widths"):
        SmallCNN(3, widths=(8, 8, 8))
    with pytest.raises(ValueError, match="depths"):
        DualPathSwin(3, depths=(1, 1, 1))


def test_build_model_registry():
    m = build_model("small-cnn", 4, share_point="F2", widths=(8, 8, 8, 8, 8))
    assert isinstance(m, SmallCNN) and m.num_specific == 2 and m.num_classes == 4
    s = build_model("dual-swin", 4, img_size=SIZE, **SWIN_TINY_TEST_CONFIG)
    assert isinstance(s, DualPathSwin) and s.num_specific == 3
    with pytest.raises(ValueError, match="unknown model 'resnet'.*dual-swin"):
        build_model("resnet", 4)


# ------------------------------------------------------------------ weights
def _tiny_torchvision_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in SWIN_TINY_TEST_CONFIG.items()}
    return SwinTransformer(**cfg, num_classes=11).state_dict()


def _assert_loaded(model: DualPathSwin, sd: dict[str, torch.Tensor]) -> None:
    # torchvision name -> (unit index, name inside the unit)
    def unit_key(key: str) -> tuple[int, str]:
        if key.startswith("norm."):
            return 4, "2." + key[5:]
        idx, rest = key.split(".", 2)[1:]
        idx = int(idx)
        unit = {0: 0, 1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 6: 4, 7: 4}[idx]
        return unit, rest if idx < 2 else f"{(idx - 2) % 2}.{rest}"

    checked = 0
    for key, value in sd.items():
        if key.startswith("head."):
            continue
        u, name = unit_key(key)
        for modality in (0, 1):
            assert torch.equal(model.path(modality)[u].state_dict()[name], value), key
        checked += 1
    assert checked == len([k for k in sd if not k.startswith("head.")])


def test_load_local_torchvision_checkpoint(tmp_path):
    sd = _tiny_torchvision_state_dict()
    path = tmp_path / "swin.pth"
    torch.save(sd, path)
    for share_point in ("F1", "F3", "F5"):
        torch.manual_seed(123)  # a different random init, overwritten by the file
        model = tiny_swin(5, share_point, pretrained_path=path)
        _assert_loaded(model, sd)
    # wrapped and DataParallel-prefixed checkpoints are accepted too
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "wrapped.pth")
    _assert_loaded(tiny_swin(5, pretrained_path=tmp_path / "wrapped.pth"), sd)


def test_bad_checkpoints_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found.*nothing is downloaded"):
        tiny_swin(pretrained_path=tmp_path / "missing.pth")
    sd = _tiny_torchvision_state_dict()
    good = tmp_path / "good.pth"
    torch.save(sd, good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="could not read"):
        tiny_swin(pretrained_path=truncated)
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="does not hold a state_dict"):
        tiny_swin(pretrained_path=tmp_path / "list.pth")
    # another configuration: shapes do not match
    wider = dict(SWIN_TINY_TEST_CONFIG, embed_dim=8, num_heads=(1, 1, 2, 2))
    with pytest.raises(ValueError, match="shape mismatch"):
        DualPathSwin(3, img_size=SIZE, pretrained_path=good, **wider)
    # missing and unexpected keys
    broken = {k: v for k, v in sd.items() if not k.startswith("features.5.")}
    broken["features.9.weight"] = torch.zeros(1)
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="missing: .*unexpected: features.9.weight"):
        tiny_swin(pretrained_path=tmp_path / "broken.pth")
    assert load_swin_state_dict(good).keys() == sd.keys()


@pytest.mark.slow
def test_full_swin_t_from_local_file_and_224_forward(tmp_path):
    from torchvision.models import swin_t

    torch.manual_seed(0)
    reference = swin_t(weights=None)
    sd = reference.state_dict()
    path = tmp_path / "swin_t.pth"
    torch.save(sd, path)
    torch.manual_seed(1)
    model = DualPathSwin(10, "F3", pretrained_path=path)
    assert model.config == {k: list(v) if isinstance(v, tuple) else v for k, v in SWIN_T_CONFIG.items()}
    _assert_loaded(model, sd)
    model.eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        feat = model.forward_features(x, None, modal=1)
        reference.head = torch.nn.Identity()
        ref = reference.eval()(x)
    assert feat.shape == (1, 768)
    torch.testing.assert_close(feat, ref, atol=1e-4, rtol=1e-4)
