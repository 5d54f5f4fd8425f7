"""LLVIP reader (files the tests write) and MAG on registered pairs in torchvision v2 pipelines."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from mag_mmt import ModalityAugmentV2
from mag_mmt.data import LLVIPDataset, read_llvip
from mag_mmt.errors import UserError
from tests.reference_augment import reference_exchange

H, W = 24, 32


def _xml(boxes, name="person") -> str:
    objects = "".join(
        f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for x1, y1, x2, y2 in boxes
    )
    return (f"<annotation><folder>LLVIP</folder><size><width>{W}</width><height>{H}</height><depth>3</depth></size>"
            f"{objects}</annotation>")


def write_llvip(root, names=("010001", "010002", "010003"), split="train", infrared_mode="L"):
    """A tiny LLVIP tree: per name a colour visible JPEG, an infrared JPEG, a VOC XML with
    ``k + 1`` boxes for the ``k``-th name. Returns {name: boxes}."""
    rng = np.random.default_rng(0)
    for sub in (f"visible/{split}", f"infrared/{split}", "Annotations"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    written = {}
    for k, name in enumerate(names):
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(
            os.path.join(root, "visible", split, name + ".jpg"))
        Image.fromarray(rng.integers(0, 255, (H, W), dtype=np.uint8)).convert(infrared_mode).save(
            os.path.join(root, "infrared", split, name + ".jpg"))
        boxes = [[1 + i, 2 + i, 10 + 3 * i, 20 + i] for i in range(k + 1)]
        with open(os.path.join(root, "Annotations", name + ".xml"), "w") as f:
            f.write(_xml(boxes))
        written[name] = boxes
    return written


# ------------------------------------------------------------------ reader
def test_read_llvip_layout(tmp_path):
    written = write_llvip(tmp_path)
    write_llvip(tmp_path, names=("190001",), split="test")
    pairs = read_llvip(tmp_path, split="train")
    assert [os.path.basename(p.visible_path) for p in pairs] == ["010001.jpg", "010002.jpg", "010003.jpg"]
    for pair, (name, boxes) in zip(pairs, written.items()):
        assert pair.infrared_path == os.path.join(str(tmp_path), "infrared", "train", name + ".jpg")
        assert pair.boxes.dtype == torch.float32 and pair.boxes.shape == (len(boxes), 4)
        assert pair.boxes.tolist() == [[float(c) for c in b] for b in boxes]
        assert pair.labels.dtype == torch.int64 and pair.labels.tolist() == [1] * len(boxes)
        assert pair.names == ("person",) * len(boxes)
        assert pair.annotation_path.endswith(name + ".xml")
    assert [os.path.basename(p.visible_path) for p in read_llvip(tmp_path, split="test")] == ["190001.jpg"]


def test_read_llvip_errors_name_the_file(tmp_path):
    write_llvip(tmp_path)
    with pytest.raises(UserError, match="split must be one of"):
        read_llvip(tmp_path, split="val")
    os.makedirs(tmp_path / "visible" / "test")
    with pytest.raises(UserError, match=r"infrared folder not found: .*infrared.test"):
        read_llvip(tmp_path, split="test")

    os.remove(tmp_path / "infrared" / "train" / "010002.jpg")
    Image.new("RGB", (W, H)).save(tmp_path / "infrared" / "train" / "010009.jpg")
    with pytest.raises(UserError, match=r"010002 \(no infrared image in .*\); 010009 \(no visible image"):
        read_llvip(tmp_path)
    Image.new("RGB", (W, H)).save(tmp_path / "infrared" / "train" / "010002.jpg")
    os.remove(tmp_path / "infrared" / "train" / "010009.jpg")
    assert len(read_llvip(tmp_path)) == 3

    xml = tmp_path / "Annotations" / "010003.xml"
    xml.write_text("<annotation>\n<object><name>person</name>\n<bndbox><xmin>1</xmin></object>\n</annotation>")
    with pytest.raises(UserError, match=r"010003\.xml: malformed XML at line 3"):
        read_llvip(tmp_path)
    xml.write_text(_xml([[5, 5, 9, 9]], name="car"))
    with pytest.raises(UserError, match=r"010003\.xml: object 1 has class 'car'"):
        read_llvip(tmp_path)
    assert read_llvip(tmp_path, classes=("person", "car"))[2].labels.tolist() == [2]
    xml.write_text(_xml([[1, 1, 5, 5], [9, 5, 4, 8]]))
    with pytest.raises(UserError, match=r"010003\.xml: object 2 has an empty box"):
        read_llvip(tmp_path)
    xml.write_text(_xml([[1, 1, "a", 5]]))
    with pytest.raises(UserError, match=r"010003\.xml: object 1 <xmax> is not a number: 'a'"):
        read_llvip(tmp_path)
    xml.write_text("<annotation><object><bndbox/></object></annotation>")
    with pytest.raises(UserError, match=r"010003\.xml: object 1 has no <name>"):
        read_llvip(tmp_path)
    os.remove(xml)
    with pytest.raises(UserError, match=r"annotation missing for 010003: .*010003\.xml"):
        read_llvip(tmp_path)


def test_dataset_yields_v2_samples(tmp_path):
    write_llvip(tmp_path, infrared_mode="L")
    pairs = read_llvip(tmp_path)
    sample = LLVIPDataset(pairs)[1]
    assert isinstance(sample["visible"], tv_tensors.Image) and sample["visible"].shape == (3, H, W)
    assert isinstance(sample["infrared"], tv_tensors.Image) and sample["infrared"].shape == (3, H, W)
    assert sample["visible"].dtype == torch.uint8
    assert isinstance(sample["boxes"], tv_tensors.BoundingBoxes) and sample["boxes"].canvas_size == (H, W)
    assert torch.equal(sample["boxes"].as_subclass(torch.Tensor), pairs[1].boxes)
    assert torch.equal(sample["labels"], pairs[1].labels)
    # with a v2 pipeline: resize moves images and boxes together, MAG keeps the boxes
    pipeline = v2.Compose([v2.Resize((2 * H, 2 * W)), ModalityAugmentV2(p=1.0), v2.ToDtype(torch.float32, scale=True)])
    out = LLVIPDataset(pairs, transforms=pipeline)[1]
    assert out["visible"].shape == (3, 2 * H, 2 * W) and out["visible"].dtype == torch.float32
    torch.testing.assert_close(out["boxes"].as_subclass(torch.Tensor), 2 * pairs[1].boxes)
    # unregistered pair: sizes differ
    Image.new("RGB", (W + 1, H)).save(pairs[0].infrared_path)
    with pytest.raises(UserError, match=r"010001\.jpg .* must have one size"):
        LLVIPDataset(pairs)[0]


# ------------------------------------------------------------------ ModalityAugmentV2
def _sample(seed: int, batch: int | None = None, dtype=torch.uint8, infrared_channels: int = 3):
    g = torch.Generator().manual_seed(seed)
    lead = () if batch is None else (batch,)
    if dtype == torch.uint8:
        visible = torch.randint(0, 256, (*lead, 3, H, W), generator=g, dtype=torch.uint8)
        infrared = torch.randint(0, 256, (*lead, infrared_channels, H, W), generator=g, dtype=torch.uint8)
    else:
        visible = torch.rand((*lead, 3, H, W), generator=g, dtype=dtype)
        infrared = torch.rand((*lead, infrared_channels, H, W), generator=g, dtype=dtype)
    boxes = tv_tensors.BoundingBoxes([[1, 2, 10, 20], [5, 5, 30, 22]], format="XYXY", canvas_size=(H, W))
    return {
        "visible": tv_tensors.Image(visible),
        "infrared": tv_tensors.Image(infrared),
        "boxes": boxes if batch is None else [boxes] * batch,
        "masks": tv_tensors.Mask(torch.zeros(2, H, W, dtype=torch.uint8)),
        "labels": torch.tensor([1, 1]),
        "image_id": 7,
    }


def _expected(sample, params, batched: bool):
    v = sample["visible"].as_subclass(torch.Tensor)
    t = sample["infrared"].as_subclass(torch.Tensor)
    if not batched:
        v, t = v.unsqueeze(0), t.unsqueeze(0)
    ev, et = reference_exchange(v, t, params["boxes"].tolist(), params["batch_prob"].tolist())
    return (ev, et) if batched else (ev[0], et[0])


@given(seed=st.integers(0, 10_000), p=st.sampled_from([0.0, 0.5, 1.0]),
       batch=st.sampled_from([None, 1, 4]), dtype=st.sampled_from([torch.uint8, torch.float32]),
       infrared_channels=st.sampled_from([1, 3]))
def test_v2_transform_matches_reference_and_passes_targets(seed, p, batch, dtype, infrared_channels):
    sample = _sample(seed, batch, dtype, infrared_channels)
    t = ModalityAugmentV2(p=p, generator=seed)
    out = t(sample)
    params = t.augment._params
    ev, et = _expected(sample, params, batch is not None)
    for key, want in (("visible", ev), ("infrared", et)):
        assert type(out[key]) is tv_tensors.Image and out[key].dtype == dtype
        assert torch.equal(out[key].as_subclass(torch.Tensor), want)
    for key in ("boxes", "masks", "labels", "image_id"):
        assert out[key] is sample[key]
    assert out is not sample and set(out) == set(sample)
    if p == 0.0:
        assert torch.equal(out["visible"], sample["visible"])


def test_v2_transform_in_compose_with_geometry():
    sample = _sample(3)
    mag = ModalityAugmentV2(p=1.0, generator=0)
    out = v2.Compose([mag, v2.RandomHorizontalFlip(p=1.0)])(sample)
    ev, et = _expected(sample, mag.augment._params, batched=False)
    assert torch.equal(out["visible"].as_subclass(torch.Tensor), ev.flip(-1))
    assert torch.equal(out["infrared"].as_subclass(torch.Tensor), et.flip(-1))
    flipped = v2.RandomHorizontalFlip(p=1.0)(sample["boxes"])
    assert torch.equal(out["boxes"], flipped) and type(out["boxes"]) is tv_tensors.BoundingBoxes


def test_v2_transform_positional_and_custom_keys():
    sample = _sample(5)
    mag = ModalityAugmentV2(p=1.0, generator=1)
    v, t, target = mag(sample["visible"], sample["infrared"], {"boxes": sample["boxes"]})
    ev, et = _expected(sample, mag.augment._params, batched=False)
    assert torch.equal(v.as_subclass(torch.Tensor), ev) and torch.equal(t.as_subclass(torch.Tensor), et)
    assert target["boxes"] is sample["boxes"]
    renamed = {"rgb": sample["visible"], "thermal": sample["infrared"]}
    out = ModalityAugmentV2(p=1.0, visible_key="rgb", infrared_key="thermal")(renamed)
    assert set(out) == {"rgb", "thermal"} and not torch.equal(out["rgb"], renamed["rgb"])
    # plain tensors in a dict stay plain tensors
    plain = ModalityAugmentV2(p=1.0)({"visible": torch.rand(3, 8, 8), "infrared": torch.rand(3, 8, 8)})
    assert type(plain["visible"]) is torch.Tensor


def test_v2_transform_errors():
    sample = _sample(0)
    mag = ModalityAugmentV2(p=1.0)
    with pytest.raises(UserError, match="no 'infrared'.*set visible_key"):
        mag({"visible": sample["visible"], "ir": sample["infrared"]})
    with pytest.raises(UserError, match="exactly two tv_tensors.Image.*found 1"):
        mag(sample["visible"], {"boxes": sample["boxes"]})
    with pytest.raises(UserError, match="same spatial size"):
        mag({"visible": sample["visible"], "infrared": tv_tensors.Image(torch.zeros(3, H + 1, W, dtype=torch.uint8))})
    with pytest.raises(UserError, match="both be one image"):
        mag({"visible": sample["visible"], "infrared": sample["infrared"][None]})
    with pytest.raises(UserError, match=r"\(C, H, W\) or \(B, C, H, W\)"):
        mag({"visible": torch.zeros(H, W), "infrared": torch.zeros(H, W)})
