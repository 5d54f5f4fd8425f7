"""AGW's two-path ResNet-50: shapes, share points, last stride, non-local blocks, weight files."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet, resnet50

from mag_mmt.errors import UserError
from mag_mmt.models import DualResNet50, NonLocal, build_model, parse_share_point
from mag_mmt.models.dual_resnet import ResNetStage

SIZE = (64, 32)
CHEAP = dict(width_per_group=8)  # same channels and names as ResNet-50, ~8x fewer 3x3 FLOPs


def images(b: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 3, *SIZE, generator=torch.Generator().manual_seed(seed))


def cheap_torchvision(seed: int = 0) -> ResNet:
    torch.manual_seed(seed)
    return ResNet(Bottleneck, [3, 4, 6, 3], width_per_group=8, num_classes=11)


# ------------------------------------------------------------------ shapes and structure
def test_shapes_last_stride_and_feature_map():
    torch.manual_seed(0)
    model = build_model("dual-resnet50", 7, **CHEAP)
    assert isinstance(model, DualResNet50) and model.num_specific == 1  # AGW: only the stem specific
    feat, logits = model(images(3), images(2, 1))
    assert feat.shape == (5, 2048) and logits.shape == (5, 7)
    # stride 16 with last stride 1 (AGW), 32 with torchvision's stride 2
    assert model.forward_feature_map(images(2), None, modal=1).shape == (2, 2048, 4, 2)
    s2 = DualResNet50(7, last_stride=2, **CHEAP)
    assert s2.forward_feature_map(images(2), None, modal=1).shape == (2, 2048, 2, 1)
    first = model.shared[-1].blocks[0]
    assert first.conv2.stride == (1, 1) and first.downsample[0].stride == (1, 1)
    model.eval()
    with torch.no_grad():
        assert model(images(2), images(2, 1)).shape == (4, 2048)


@pytest.mark.parametrize("share_point", [0, 1, "F2", "F3", "F5"])
def test_share_points_split_specific_and_shared_parameters(share_point):
    torch.manual_seed(0)
    model = DualResNet50(5, share_point, **CHEAP)
    n_spec = parse_share_point(share_point)
    for i, (a, b) in enumerate(zip(model.path(0), model.path(1))):
        ids_a, ids_b = {id(p) for p in a.parameters()}, {id(p) for p in b.parameters()}
        if i < n_spec:
            assert a is not b and ids_a and not ids_a & ids_b
            assert all(torch.equal(pa, pb) for pa, pb in zip(a.parameters(), b.parameters()))
        else:
            assert a is b
    units = [sum(p.numel() for p in u.parameters()) for u in model.path(0)]
    head = sum(p.numel() for p in model.head.parameters())
    assert sum(p.numel() for p in model.parameters()) == sum(units) + sum(units[:n_spec]) + head
    # the stem is conv1, bn1, relu, maxpool of torchvision's ResNet
    assert list(dict(model.path(0)[0].named_children())) == ["conv1", "bn1", "relu", "maxpool"]


def test_non_local_blocks_follow_agws_default_and_switch():
    model = DualResNet50(3, **CHEAP)
    stages = model.path(0)[1:]
    assert [len(s.non_local) for s in stages] == [0, 2, 3, 0]
    assert [s.non_local_after for s in stages] == [[], [2, 3], [3, 4, 5], []]
    assert all(nl.inter_channels == 1 for s in stages for nl in s.non_local)  # AGW's reduc_ratio // reduc_ratio
    off = DualResNet50(3, non_local=False, **CHEAP)
    assert sum(len(s.non_local) for s in off.path(0)[1:]) == 0
    custom = DualResNet50(3, non_local=(1, 0, 0, 3), non_local_channels=4, **CHEAP)
    assert [s.non_local_after for s in custom.path(0)[1:]] == [[2], [], [], [0, 1, 2]]
    with pytest.raises(UserError, match="non-local"):
        DualResNet50(3, non_local=(0, 5, 0, 0), **CHEAP)


def test_stage_runs_non_local_after_the_named_blocks():
    torch.manual_seed(0)
    tv = cheap_torchvision()
    stage = ResNetStage(tv.layer2, 2, inter_channels=2).eval()
    for nl in stage.non_local:  # make the blocks non-trivial
        nn.init.normal_(nl.W[1].weight)
    x = torch.randn(2, 256, 8, 4)
    with torch.no_grad():
        want = x
        for i, block in enumerate(tv.layer2):
            want = block(want)
            if i >= 2:
                want = stage.non_local[i - 2](want)
        assert torch.allclose(stage(x), want)


def test_non_local_matches_agws_formula():
    torch.manual_seed(0)
    block = NonLocal(6, inter_channels=3).eval()
    nn.init.normal_(block.W[1].weight)
    nn.init.normal_(block.W[1].bias)
    x = torch.randn(2, 6, 5, 3)
    with torch.no_grad():
        b, c = 2, 3
        g = block.g(x).view(b, c, -1).permute(0, 2, 1)
        theta = block.theta(x).view(b, c, -1).permute(0, 2, 1)
        phi = block.phi(x).view(b, c, -1)
        f = torch.matmul(theta, phi)
        y = torch.matmul(f / f.size(-1), g).permute(0, 2, 1).contiguous().view(b, c, 5, 3)
        want = block.W(y) + x
        assert torch.allclose(block(x), want, atol=1e-5)
    fresh = NonLocal(6)
    assert torch.equal(fresh(x), x)  # zero-initialised BN: identity at the start


# ------------------------------------------------------------------ AGW contract
def test_single_paths_test_feature_and_eval_rows():
    torch.manual_seed(0)
    model = DualResNet50(5, **CHEAP).eval()
    with torch.no_grad():
        for p in model.thermal.parameters():
            p.add_(0.05 * torch.randn_like(p))
        x1, x2 = images(3), images(2, 1)
        both = model(x1, x2)
        torch.testing.assert_close(both[:3], model(x1, None, modal=1), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(both[3:], model(None, x2, modal=2), atol=1e-4, rtol=1e-4)
        feat = model.forward_features(x1, x2)
        bn, _ = model.forward_head(feat)
        torch.testing.assert_close(both, bn)
        model.test_feature = "pool"
        assert model.eval_feature == "pool"
        torch.testing.assert_close(model(x1, x2), feat)
    assert build_model("dual-resnet50", 5, test_feature="pool", **CHEAP).eval_feature == "pool"
    assert DualResNet50(5, eval_feature="pool", **CHEAP).test_feature == "pool"
    with pytest.raises(UserError, match="disagree"):
        DualResNet50(5, test_feature="bn", eval_feature="pool", **CHEAP)
    with pytest.raises(UserError, match="test_feature"):
        DualResNet50(5, test_feature="l2", **CHEAP)


def test_matches_torchvision_resnet_when_configured_like_it():
    """No non-local, stride 2, average pooling, same weights: the pooled feature is torchvision's."""
    tv = cheap_torchvision(1).eval()
    model = DualResNet50(4, share_point=0, non_local=False, last_stride=2, pool_p=1.0, **CHEAP).eval()
    model.load_torchvision_state_dict(tv.state_dict())
    x = images(2, 5)
    with torch.no_grad():
        want = torch.flatten(nn.Sequential(*list(tv.children())[:-1])(x), 1)
        torch.testing.assert_close(model.forward_features(x, None, modal=1), want, atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------ weight files
def _assert_landed(model: DualResNet50, sd: dict) -> None:
    checked = 0
    for key, value in sd.items():
        head, _, rest = key.partition(".")
        if head == "fc":
            continue
        unit, name = (0, key) if head in ("conv1", "bn1") else (int(head[-1]), f"blocks.{rest}")
        for modality in (0, 1):
            assert torch.equal(model.path(modality)[unit].state_dict()[name], value), key
        checked += 1
    assert checked == len([k for k in sd if not k.startswith("fc.")])


def test_pretrained_file_round_trip(tmp_path):
    sd = cheap_torchvision(2).state_dict()
    path = tmp_path / "resnet.pth"
    torch.save(sd, path)
    for share_point in (0, 1, "F3"):
        torch.manual_seed(123)
        model = build_model("dual-resnet50", 5, share_point=share_point, pretrained_path=path, **CHEAP)
        _assert_landed(model, sd)
        assert all(torch.equal(nl.W[1].weight, torch.zeros_like(nl.W[1].weight))
                   for s in model.path(0)[1:] for nl in s.non_local)  # untouched by the file
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "wrapped.pth")
    _assert_landed(DualResNet50(5, pretrained_path=tmp_path / "wrapped.pth", **CHEAP), sd)


@pytest.mark.slow
def test_full_resnet50_file_round_trip(tmp_path):
    torch.manual_seed(3)
    sd = resnet50(weights=None).state_dict()
    torch.save(sd, tmp_path / "resnet50.pth")
    model = DualResNet50(5, pretrained_path=tmp_path / "resnet50.pth")
    _assert_landed(model, sd)
    feat, logits = model(images(2), images(2, 1))
    assert feat.shape == (4, 2048) and torch.isfinite(logits).all()


def test_bad_weight_files_fail_clearly(tmp_path):
    with pytest.raises(UserError, match="not found.*nothing is downloaded"):
        DualResNet50(3, pretrained_path=tmp_path / "missing.pth", **CHEAP)
    sd = cheap_torchvision().state_dict()
    good = tmp_path / "good.pth"
    torch.save(sd, good)
    (tmp_path / "truncated.pth").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(UserError, match="could not read ResNet-50 weights"):
        DualResNet50(3, pretrained_path=tmp_path / "truncated.pth", **CHEAP)
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(UserError, match="does not hold a state_dict"):
        DualResNet50(3, pretrained_path=tmp_path / "list.pth", **CHEAP)
    # a full-width file into the cheap model: 3x3 conv shapes differ
    with pytest.raises(UserError, match=r"shape mismatch: layer1\.0\.conv1\.weight"):
        DualResNet50(3, pretrained_path=good)  # the file is cheap, the model full width
    broken = {k: v for k, v in sd.items() if not k.startswith("layer3.5.")}
    broken["layer5.0.weight"] = torch.zeros(1)
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(UserError, match=r"missing: layer3\.5\..*unexpected: layer5\.0\.weight"):
        DualResNet50(3, pretrained_path=tmp_path / "broken.pth", **CHEAP)


def test_cli_offers_the_model():
    from mag_mmt.cli import build_parser

    args = build_parser().parse_args(["train", "--data", "synthetic", "--model", "dual-resnet50"])
    assert args.model == "dual-resnet50"


def test_trainer_passes_the_weight_file(tmp_path):
    from mag_mmt.training import TrainConfig, build_model_for

    sd = cheap_torchvision(4).state_dict()
    torch.save(sd, tmp_path / "r.pth")
    cfg = TrainConfig(data="synthetic", model="dual-resnet50", share_point="F1", pretrained=str(tmp_path / "r.pth"),
                      model_kwargs={"width_per_group": 8})
    _assert_landed(build_model_for(cfg, 4), sd)
