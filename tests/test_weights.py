"""Pretrained Swin-T weights in the layouts users hold: torchvision, timm >= 0.9, the official
release (= timm < 0.9). Every backbone tensor of the file must land in the dual-path model,
twice for the modality-specific units and once for the shared ones; anything that does not
fit stops the load."""

from __future__ import annotations

import hashlib
import logging
import re

import pytest
import timm
import torch
from timm.models.swin_transformer import SwinTransformer as TimmSwin

from mag_mmt.errors import UserError
from mag_mmt.models import DualPathSwin, convert_swin_state_dict, detect_swin_layout
from mag_mmt.models.weights import swin_key_in_layout

# a small Swin with shifted windows in every stage (two blocks each); square images so that
# timm keeps the window size in the last stage (2 x 2 tokens)
TINY = dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=(2, 2))
SIZE = 64
UNIT_OF_STAGE_BLOCKS = {0: 1, 1: 2, 2: 3, 3: 4}


def _perturb(model: torch.nn.Module, seed: int) -> None:
    """Distinct random values in every tensor, so each can be found by value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (p.mean() if p.numel() else 0))


def _tiny_timm(seed: int = 0) -> TimmSwin:
    model = TimmSwin(
        img_size=SIZE, patch_size=4, embed_dim=TINY["embed_dim"], depths=TINY["depths"],
        num_heads=TINY["num_heads"], window_size=2, num_classes=11,
    )
    _perturb(model, seed)
    return model.eval()


def _tiny_dual(share_point: str = "F3", **kw) -> DualPathSwin:
    return DualPathSwin(5, share_point, img_size=(SIZE, SIZE), **TINY, **kw)


def _timm_unit(key: str) -> int:
    """The dual-path unit (0 stem .. 4 stage 4) a timm >= 0.9 key belongs to."""
    if key.startswith("patch_embed."):
        return 0
    if key.startswith("norm."):
        return 4
    return int(re.match(r"layers\.(\d+)\.", key).group(1)) + 1


def _official_unit(key: str) -> int:
    m = re.match(r"layers\.(\d+)\.downsample\.", key)
    return int(m.group(1)) + 2 if m else _timm_unit(key)


def _fingerprint(t: torch.Tensor) -> tuple:
    return tuple(t.shape), hashlib.sha1(t.detach().float().contiguous().numpy().tobytes()).hexdigest()


def assert_every_tensor_lands(model: DualPathSwin, file_sd: dict, unit_of) -> None:
    """Each backbone tensor of the file appears, by value, in the model: under ``visible.`` and
    ``thermal.`` for a modality-specific unit, once under ``shared.`` for a shared one; and no
    backbone tensor of the model comes from anywhere else."""
    by_value: dict[tuple, list[str]] = {}
    model_sd = model.state_dict()
    backbone = [
        k for k in model_sd
        if k.startswith(("visible.", "thermal.", "shared.")) and not k.endswith("relative_position_index")
    ]
    for k in backbone:
        by_value.setdefault(_fingerprint(model_sd[k]), []).append(k)
    matched = set()
    checked = 0
    for key, value in file_sd.items():
        if key.startswith("head.") or key.endswith(("relative_position_index", "attn_mask")):
            continue
        unit = unit_of(key)
        where = sorted(by_value.get(_fingerprint(value), []))
        if unit < model.num_specific:
            assert len(where) == 2, (key, where)
            assert where[0].startswith(f"thermal.{unit}.") and where[1].startswith(f"visible.{unit}."), (key, where)
            assert where[0][len("thermal."):] == where[1][len("visible."):]
        else:
            assert len(where) == 1 and where[0].startswith(f"shared.{unit - model.num_specific}."), (key, where)
        matched.update(where)
        checked += 1
    assert matched == set(backbone), sorted(set(backbone) - matched)[:5]
    assert checked == model.pretrained_report.loaded
    assert model.pretrained_report.copies == len(backbone)


def _official_from_timm(model: TimmSwin) -> dict[str, torch.Tensor]:
    """The official release's layout, written here from the timm keys: patch merging closes
    stage ``s`` (``layers.s.downsample``) instead of opening stage ``s + 1``; the classifier is
    ``head``; the file carries ``relative_position_index`` (N x N) and the shifted blocks'
    ``attn_mask`` buffers."""
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        m = re.match(r"layers\.(\d+)\.downsample\.(.+)", key)
        if m:
            key = f"layers.{int(m.group(1)) - 1}.downsample.{m.group(2)}"
        elif key.startswith("head.fc."):
            key = "head." + key[len("head.fc."):]
        out[key] = value.clone()
    w = TINY["window_size"][0]
    # the official relative position index, as microsoft/Swin-Transformer builds it
    coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (w - 1)
    index = rel[:, :, 0] * (2 * w - 1) + rel[:, :, 1]
    for stage, depth in enumerate(TINY["depths"]):
        for block in range(depth):
            out[f"layers.{stage}.blocks.{block}.attn.relative_position_index"] = index.clone()
    masks = {k: v for k, v in model.named_buffers() if k.endswith("attn_mask")}
    assert masks  # the shifted blocks have one
    out.update({k: v.clone() for k, v in masks.items()})
    return out


def _same_forward(timm_model: TimmSwin, dual: DualPathSwin) -> None:
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = timm_model.forward_head(timm_model.forward_features(x), pre_logits=True)
        dual.eval()
        for modal, args in ((1, (x, None)), (2, (None, x))):
            torch.testing.assert_close(dual.forward_features(*args, modal=modal), want, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ timm >= 0.9
@pytest.mark.parametrize("share_point", ["F1", "F3", "F5"])
def test_timm_checkpoint_every_tensor_lands(tmp_path, share_point):
    reference = _tiny_timm()
    path = tmp_path / "timm_swin.pth"
    torch.save(reference.state_dict(), path)
    torch.manual_seed(1)
    model = _tiny_dual(share_point, pretrained_path=path)
    report = model.pretrained_report
    assert report.layout == "timm" and report.ignored == ("head.fc.weight", "head.fc.bias")
    assert_every_tensor_lands(model, reference.state_dict(), _timm_unit)
    _same_forward(reference, model)


def test_timm_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    reference = _tiny_timm(seed=4)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    model = _tiny_dual(pretrained_path=path)
    assert_every_tensor_lands(model, reference.state_dict(), _timm_unit)


@pytest.mark.slow
def test_timm_swin_tiny_patch4_window7_224(tmp_path, caplog):
    reference = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False)
    _perturb(reference, seed=7)
    sd = reference.state_dict()
    path = tmp_path / "swin_tiny_patch4_window7_224.pth"
    torch.save(sd, path)
    with caplog.at_level(logging.INFO, logger="mag_mmt.models.dual_swin"):
        model = DualPathSwin(10, "F3", pretrained_path=path)
    assert_every_tensor_lands(model, sd, _timm_unit)
    assert model.pretrained_report.loaded == len([k for k in sd if not k.startswith("head.")])
    assert "loaded 171 Swin tensors" in caplog.text and "head.fc.weight" in caplog.text
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        want = reference.eval().forward_head(reference.forward_features(x), pre_logits=True)
        torch.testing.assert_close(model.eval().forward_features(x, None, modal=1), want, atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------ official release
@pytest.mark.parametrize("share_point", ["F2", "F4"])
def test_official_release_checkpoint_every_tensor_lands(tmp_path, share_point):
    reference = _tiny_timm(seed=2)
    official = _official_from_timm(reference)
    assert "layers.0.downsample.reduction.weight" in official and "layers.3.downsample.norm.weight" not in official
    path = tmp_path / "swin_tiny_patch4_window7_224.pth"
    torch.save({"model": official, "epoch": torch.tensor(300)}, path)
    model = _tiny_dual(share_point, pretrained_path=path)
    report = model.pretrained_report
    assert report.layout == "official" and report.ignored == ("head.weight", "head.bias")
    assert report.checked == sum(TINY["depths"]) and report.recomputed == sum(k.endswith("attn_mask") for k in official)
    assert "official Swin release" in str(report) and "ignored on purpose: head.weight" in str(report)
    assert_every_tensor_lands(model, official, _official_unit)
    _same_forward(reference, model)


def test_torchvision_report_and_layout_detection(tmp_path):
    from torchvision.models.swin_transformer import SwinTransformer

    torch.manual_seed(0)
    sd = SwinTransformer(patch_size=[4, 4], stochastic_depth_prob=0.0, **{k: list(v) if isinstance(v, tuple) else v
                                                                         for k, v in TINY.items()}).state_dict()
    path = tmp_path / "tv.pth"
    torch.save(sd, path)
    model = _tiny_dual("F3", pretrained_path=path)
    report = model.pretrained_report
    assert report.layout == "torchvision" and report.specific_units == ("stem", "stage1", "stage2")
    assert report.shared_units == ("stage3", "stage4") and report.checked == sum(TINY["depths"])
    assert detect_swin_layout(sd) == "torchvision"
    assert detect_swin_layout(_tiny_timm().state_dict()) == "timm"
    assert detect_swin_layout(_official_from_timm(_tiny_timm())) == "official"


def test_key_renaming_round_trips():
    timm_sd = _tiny_timm().state_dict()
    official = _official_from_timm(_tiny_timm())
    for sd, layout in ((timm_sd, "timm"), (official, "official")):
        converted = convert_swin_state_dict(sd)
        assert converted.layout == layout
        for tv_key, file_key in converted.origin.items():
            assert tv_key.startswith(("features.", "norm.")), file_key
            assert swin_key_in_layout(tv_key, layout) == file_key


# ------------------------------------------------------------------ errors: never a partial load
def _params(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_keys_that_do_not_fit_are_listed_and_nothing_loads(tmp_path):
    reference = _tiny_timm()
    model = _tiny_dual()
    before = _params(model)
    sd = reference.state_dict()

    extra = dict(sd)
    extra["layers.0.blocks.0.attn.logit_scale"] = torch.zeros(1)      # a Swin V2 parameter
    extra["absolute_pos_embed"] = torch.zeros(1, 256, 16)
    with pytest.raises(UserError, match=r"unexpected: .*layers\.0\.blocks\.0\.attn\.logit_scale"):
        model.load_swin_weights(extra, source="extra.pth")
    with pytest.raises(UserError, match="absolute_pos_embed"):
        model.load_swin_weights(extra)

    missing = {k: v for k, v in sd.items() if not k.startswith("layers.2.downsample.")}
    with pytest.raises(UserError, match=r"missing: layers\.2\.downsample\.reduction\.weight"):
        model.load_swin_weights(missing)

    wrong = dict(sd)
    wrong["layers.1.blocks.0.mlp.fc1.weight"] = torch.zeros(3, 3)
    with pytest.raises(UserError, match=r"shape mismatch: layers\.1\.blocks\.0\.mlp\.fc1\.weight"):
        model.load_swin_weights(wrong)

    # official file whose position index is not the model's
    official = _official_from_timm(reference)
    official["layers.2.blocks.1.attn.relative_position_index"] = official[
        "layers.2.blocks.1.attn.relative_position_index"].flip(0)
    with pytest.raises(UserError, match=r"layers\.2\.blocks\.1\.attn\.relative_position_index: differs"):
        model.load_swin_weights(official)

    # timm file with a stage-0 downsample mixed in is read as the official layout and fails
    with pytest.raises(UserError, match="official Swin release.*unexpected"):
        model.load_swin_weights({**sd, "layers.0.downsample.norm.weight": torch.zeros(64)})

    after = _params(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.pretrained_report is None


def test_unknown_files(tmp_path):
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "resnet.pth")
    with pytest.raises(UserError, match="not a Swin checkpoint.*conv.weight"):
        _tiny_dual(pretrained_path=tmp_path / "resnet.pth")
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="could not read"):
        _tiny_dual(pretrained_path=tmp_path / "bad.safetensors")
    with pytest.raises(UserError, match="layout must be"):
        convert_swin_state_dict({}, layout="keras")
