"""LLVIP: aligned visible-infrared pedestrian detection pairs, and their torch ``Dataset``.

Layout read by :func:`read_llvip` (the dataset as released)::

    root/visible/train/010001.jpg     root/infrared/train/010001.jpg     (same names)
    root/visible/test/190001.jpg      root/infrared/test/190001.jpg
    root/Annotations/010001.xml       (Pascal VOC: <object><name>person</name><bndbox>
                                        <xmin/><ymin/><xmax/><ymax/></bndbox></object> ...)

The two images of a pair are registered, so one box list serves both. Boxes are ``xyxy`` in
pixels, exactly as written in the XML (float32); labels are 1-based indices into ``classes``
(0 is the background class of torchvision's detectors). :class:`LLVIPDataset` yields the dict
a ``torchvision.transforms.v2`` pipeline takes: ``{"visible": Image, "infrared": Image,
"boxes": BoundingBoxes, "labels": Tensor}``, ready for
:class:`mag_mmt.augment_v2.ModalityAugmentV2` (MAG on the pair, boxes untouched).

Example::

    from mag_mmt.data import read_llvip, LLVIPDataset
    pairs = read_llvip("/data/LLVIP", split="train")
    pairs[0].boxes.shape                       # (N, 4) xyxy pixels
    sample = LLVIPDataset(pairs)[0]            # dict of tv_tensors
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset

from mag_mmt.errors import UserError

from .images import IMAGE_EXTENSIONS, read_image

__all__ = ["DetectionPair", "read_llvip", "read_voc_boxes", "LLVIPDataset"]

LLVIP_SPLITS = ("train", "test")


@dataclass(frozen=True, eq=False)
class DetectionPair:
    """One registered visible/infrared pair and its boxes.

    Attributes:
        visible_path, infrared_path: the two image files.
        boxes: ``(N, 4)`` float32, ``(x1, y1, x2, y2)`` in pixels.
        labels: ``(N,)`` int64, 1-based class indices (0 = background).
        names: the class name of each box.
        annotation_path: the VOC XML file the boxes come from.
    """

    visible_path: str
    infrared_path: str
    boxes: torch.Tensor
    labels: torch.Tensor
    names: tuple[str, ...]
    annotation_path: str


def _text(element: ET.Element, tag: str, path: str, where: str) -> str:
    child = element.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise UserError(f"{path}: {where} has no <{tag}>")
    return child.text.strip()


def read_voc_boxes(path: str, classes: Sequence[str] = ("person",)) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Boxes ``(N, 4)`` float32 xyxy, labels ``(N,)`` int64 (1-based into ``classes``) and class
    names from one Pascal VOC XML file.

    Raises :class:`~mag_mmt.errors.UserError` naming the file (and line for malformed XML, the
    object for a bad box or an unknown class). Boxes need ``x2 > x1`` and ``y2 > y1``.

    Example:
        >>> import tempfile
        >>> xml = ("<annotation><object><name>person</name><bndbox><xmin>3</xmin><ymin>4</ymin>"
        ...        "<xmax>10</xmax><ymax>30</ymax></bndbox></object></annotation>")
        >>> with tempfile.NamedTemporaryFile("w", suffix=".xml", delete=False) as f:
        ...     _ = f.write(xml)
        >>> boxes, labels, names = read_voc_boxes(f.name)
        >>> boxes.tolist(), labels.tolist(), names
        ([[3.0, 4.0, 10.0, 30.0]], [1], ('person',))
        >>> os.remove(f.name)
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        line, column = exc.position
        raise UserError(f"{path}: malformed XML at line {line}, column {column}: {exc}") from None
    except OSError as exc:
        raise UserError(f"cannot read annotation {path}: {exc}") from None
    if root.tag != "annotation":
        raise UserError(f"{path}: not a Pascal VOC annotation (root element <{root.tag}>, expected <annotation>)")
    boxes, labels, names = [], [], []
    for i, obj in enumerate(root.findall("object")):
        where = f"object {i + 1}"
        name = _text(obj, "name", path, where)
        if name not in classes:
            raise UserError(f"{path}: {where} has class {name!r}, not one of {list(classes)}")
        box = obj.find("bndbox")
        if box is None:
            raise UserError(f"{path}: {where} has no <bndbox>")
        coords = []
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            text = _text(box, tag, path, f"{where} <bndbox>")
            try:
                coords.append(float(text))
            except ValueError:
                raise UserError(f"{path}: {where} <{tag}> is not a number: {text!r}") from None
        x1, y1, x2, y2 = coords
        if not (x2 > x1 and y2 > y1):
            raise UserError(f"{path}: {where} has an empty box (xmin, ymin, xmax, ymax) = {tuple(coords)}")
        boxes.append(coords)
        labels.append(classes.index(name) + 1)
        names.append(name)
    return (
        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        torch.tensor(labels, dtype=torch.int64),
        tuple(names),
    )


def _images_by_name(folder: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for entry in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(entry)
        if ext.lower() not in IMAGE_EXTENSIONS:
            continue
        if stem in found:
            raise UserError(f"{folder}: two images named {stem!r}: {os.path.basename(found[stem])} and {entry}")
        found[stem] = os.path.join(folder, entry)
    return found


def read_llvip(
    root: str | os.PathLike, split: str = "train", classes: Sequence[str] = ("person",)
) -> list[DetectionPair]:
    """The image pairs of one LLVIP split, sorted by name (see the module docstring for the layout).

    Raises :class:`~mag_mmt.errors.UserError` for a missing folder, an unknown split, an image
    without its other modality (all such names are listed), a missing or malformed annotation.
    """
    root = os.fspath(root)
    if split not in LLVIP_SPLITS:
        raise UserError(f"split must be one of {list(LLVIP_SPLITS)}, got {split!r}")
    folders = {
        "visible": os.path.join(root, "visible", split),
        "infrared": os.path.join(root, "infrared", split),
        "annotations": os.path.join(root, "Annotations"),
    }
    for name, folder in folders.items():
        if not os.path.isdir(folder):
            raise UserError(f"LLVIP {name} folder not found: {folder} (expected the LLVIP layout under {root})")
    visible = _images_by_name(folders["visible"])
    infrared = _images_by_name(folders["infrared"])
    unpaired = [f"{n} (no infrared image in {folders['infrared']})" for n in sorted(set(visible) - set(infrared))]
    unpaired += [f"{n} (no visible image in {folders['visible']})" for n in sorted(set(infrared) - set(visible))]
    if unpaired:
        shown = "; ".join(unpaired[:5]) + (f"; ... ({len(unpaired)} in all)" if len(unpaired) > 5 else "")
        raise UserError(f"LLVIP {split}: images missing one modality: {shown}")
    if not visible:
        raise UserError(f"LLVIP {split}: no images in {folders['visible']}")
    pairs = []
    for name in sorted(visible):
        xml = os.path.join(folders["annotations"], name + ".xml")
        if not os.path.isfile(xml):
            raise UserError(f"LLVIP {split}: annotation missing for {name}: {xml}")
        boxes, labels, names = read_voc_boxes(xml, classes)
        pairs.append(DetectionPair(visible[name], infrared[name], boxes, labels, names, xml))
    return pairs


class LLVIPDataset(Dataset):
    """Decoded pairs as ``torchvision.transforms.v2`` samples.

    Item ``i`` is ``transforms(sample)`` (or ``sample``) with ``sample`` =
    ``{"visible": Image (3, H, W) uint8, "infrared": Image (3, H, W) uint8, "boxes":
    BoundingBoxes (N, 4) XYXY on the (H, W) canvas, "labels": (N,) int64}``. One-channel
    infrared files are repeated to three channels. A pair whose two images differ in size
    raises :class:`~mag_mmt.errors.UserError` naming both files (pairs must be registered).
    """

    def __init__(self, pairs: Sequence[DetectionPair], transforms: Callable[[dict], dict] | None = None) -> None:
        self.pairs = list(pairs)
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        from torchvision import tv_tensors

        pair = self.pairs[index]
        visible, infrared = read_image(pair.visible_path), read_image(pair.infrared_path)
        if visible.shape != infrared.shape:
            raise UserError(
                f"pair {pair.visible_path} {tuple(visible.shape[1:])} and {pair.infrared_path} "
                f"{tuple(infrared.shape[1:])}: the two images of a pair must have one size (registered)"
            )
        sample = {
            "visible": tv_tensors.Image(visible),
            "infrared": tv_tensors.Image(infrared),
            "boxes": tv_tensors.BoundingBoxes(
                pair.boxes.clone(), format="XYXY", canvas_size=tuple(visible.shape[1:])
            ),
            "labels": pair.labels.clone(),
        }
        return self.transforms(sample) if self.transforms is not None else sample
