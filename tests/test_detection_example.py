"""examples/detection_llvip.py: early-fused Faster R-CNN trains with and without MAG, on its
synthetic pairs and on an LLVIP tree the test writes."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import pytest
import torch

from mag_mmt.augment_v2 import ModalityAugmentV2
from tests.test_llvip import write_llvip

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "detection_llvip.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("detection_llvip", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_widened_first_convolution_and_pipeline(example):
    torch.manual_seed(0)
    model = example.build_detector("mobilenet", size=64)
    first = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 6
    assert not any(isinstance(m, torch.nn.Conv2d) and m.in_channels == 3 for m in model.modules())
    assert len(model.transform.image_mean) == 6 and len(model.transform.image_std) == 6
    conv = torch.nn.Conv2d(3, 4, 3)
    holder = torch.nn.Sequential(conv)
    wide = example.widen_first_conv(holder, 6)
    assert holder[0] is wide and torch.equal(wide.weight[:, 3:], conv.weight / 2)
    assert torch.equal(wide.weight[:, :3], conv.weight / 2) and torch.equal(wide.bias, conv.bias)
    model.eval()
    with torch.no_grad():
        (out,) = model([torch.rand(6, 64, 64)])
    assert out["boxes"].shape[1] == 4
    assert any(isinstance(t, ModalityAugmentV2) for t in example.pipeline(True).transforms)
    assert not any(isinstance(t, ModalityAugmentV2) for t in example.pipeline(False).transforms)
    # the synthetic pairs are registered and their boxes lie inside the image
    pair = example.synthetic_pair(64, torch.Generator().manual_seed(0))
    assert pair["visible"].shape == pair["infrared"].shape == (3, 64, 64)
    boxes = pair["boxes"].as_subclass(torch.Tensor)
    assert len(boxes) >= 1 and bool((boxes[:, 2:] <= 64).all() and (boxes[:, :2] >= 0).all())
    inside = pair["infrared"][0, int(boxes[0, 1]):int(boxes[0, 3]), int(boxes[0, 0]):int(boxes[0, 2])]
    assert inside.float().mean() > pair["infrared"][0].float().mean()  # warm bodies


def _check_run(losses, printed, steps):
    assert len(losses) == steps and all(math.isfinite(x) and x > 0 for x in losses)
    lines = re.findall(r"step (\d+)/(\d+) loss ([\d.]+) \(classifier [\d.]+ box_reg [\d.]+", printed)
    assert [int(s) for s, _, _ in lines] == list(range(1, steps + 1))


@pytest.mark.slow
def test_example_trains_on_synthetic_pairs_with_mag(example, capsys):
    losses = example.main(["--steps", "2", "--size", "64"])
    printed = capsys.readouterr().out
    assert "synthetic pairs, MAG on" in printed
    _check_run(losses, printed, 2)


@pytest.mark.slow
def test_example_trains_on_llvip_tree_without_mag(example, capsys, tmp_path):
    write_llvip(tmp_path)
    losses = example.main(["--steps", "2", "--size", "64", "--root", str(tmp_path), "--no-mag"])
    printed = capsys.readouterr().out
    assert f"LLVIP {tmp_path}, MAG off" in printed
    _check_run(losses, printed, 2)
