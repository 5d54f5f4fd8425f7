"""MAG for RGB-thermal pedestrian detection: torchvision's Faster R-CNN on early-fused pairs.

Runs on a CPU in seconds with synthetic registered pairs it draws itself (nothing is
downloaded: detector and backbone start from random weights), or on LLVIP::

    python examples/detection_llvip.py --steps 20                  # synthetic pairs, with MAG
    python examples/detection_llvip.py --steps 20 --no-mag         # the same without MAG
    python examples/detection_llvip.py --root /data/LLVIP --size 320 --steps 1000

Why early fusion. The visible and infrared images of a pair are registered, so they are
stacked as one 6-channel image and a stock detector sees them: only the first convolution is
widened (3 -> 6 input channels) and ``GeneralizedRCNNTransform`` gets six means and
standard deviations. That is the smallest detector that uses both modalities, built from
torchvision alone. The paper's detection experiments use CFT (Cross-Modality Fusion
Transformer), a two-stream YOLOv5 whose transformer blocks fuse the two backbones at several
scales: more accurate, but a separate code base and dependency. MAG is a data transform and
does not care which detector follows: the exchange happens on the pair before fusion, and the
boxes, shared by both images, are untouched.

Pipeline per sample (``torchvision.transforms.v2`` on a dict of ``tv_tensors``)::

    ModalityAugmentV2 (MAG, unless --no-mag) -> RandomHorizontalFlip -> ToDtype(float32)
    -> cat(visible, infrared) (6, H, W) -> Faster R-CNN (widened first convolution)
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Sequence

import torch
from torch import nn
from torchvision import tv_tensors
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn, fasterrcnn_resnet50_fpn
from torchvision.transforms import v2

from mag_mmt.augment_v2 import ModalityAugmentV2
from mag_mmt.transforms import IMAGENET_MEAN, IMAGENET_STD

# ImageNet statistics for the visible channels; the infrared channels are grey, centred at 0.5
MEAN = [*IMAGENET_MEAN, 0.5, 0.5, 0.5]
STD = [*IMAGENET_STD, 0.25, 0.25, 0.25]
LOSS_NAMES = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")


# ------------------------------------------------------------------ synthetic registered pairs
def synthetic_pair(size: int, generator: torch.Generator) -> dict:
    """One registered pair with 1-3 pedestrians: the visible image is a dim (night) colour
    scene with clutter, the infrared image shows warm bodies on a cool background. Both
    ``uint8`` (3, size, size); boxes ``xyxy`` in pixels, labels 1 (person)."""
    g = generator

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=g)

    ys = torch.linspace(0, 1, size).view(size, 1)
    visible = (0.2 + 0.3 * ys * rand(3, 1, 1)).expand(3, size, size).clone()
    infrared = (0.15 + 0.1 * rand(1, size, size)).expand(3, size, size).clone()
    for _ in range(int(torch.randint(2, 6, (1,), generator=g))):  # clutter: visible only, lukewarm
        x1, y1 = (rand(2) * size * 0.8).long().tolist()
        w, h = (4 + rand(2) * size * 0.3).long().tolist()
        visible[:, y1:y1 + h, x1:x1 + w] = rand(3, 1, 1)
        infrared[:, y1:y1 + h, x1:x1 + w] = 0.3
    boxes = []
    for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
        h = max(8, int(size * (0.3 + 0.4 * float(rand(1)))))
        w = max(4, int(h * (0.3 + 0.2 * float(rand(1)))))
        x1 = int(rand(1) * (size - w))
        y1 = int(rand(1) * (size - h))
        visible[:, y1:y1 + h, x1:x1 + w] = rand(3, 1, 1) * 0.8 + 0.1      # clothing
        visible[:, y1:y1 + h // 5, x1 + w // 4:x1 + w - w // 4] = 0.6     # head
        infrared[:, y1:y1 + h, x1:x1 + w] = 0.75 + 0.2 * rand(1, h, w)  # body heat
        boxes.append([x1, y1, x1 + w, y1 + h])
    visible = visible * (0.3 + 0.7 * rand(1))  # low light
    return {
        "visible": tv_tensors.Image((visible.clamp(0, 1) * 255).round().to(torch.uint8)),
        "infrared": tv_tensors.Image((infrared.clamp(0, 1) * 255).round().to(torch.uint8)),
        "boxes": tv_tensors.BoundingBoxes(torch.tensor(boxes, dtype=torch.float32), format="XYXY",
                                          canvas_size=(size, size)),
        "labels": torch.ones(len(boxes), dtype=torch.int64),
    }


# ------------------------------------------------------------------ model
def widen_first_conv(model: nn.Module, in_channels: int = 6) -> nn.Conv2d:
    """Replace the first 3-channel convolution of ``model`` by one with ``in_channels``: the
    RGB kernel is repeated over the new channels and scaled by ``3 / in_channels`` (so an
    ImageNet-initialised network starts as the RGB network on the channel average)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3:
            wide = nn.Conv2d(in_channels, module.out_channels, module.kernel_size, module.stride,
                             module.padding, module.dilation, module.groups, module.bias is not None)
            with torch.no_grad():
                reps = math.ceil(in_channels / 3)
                wide.weight.copy_(module.weight.repeat(1, reps, 1, 1)[:, :in_channels] * (3 / in_channels))
                if module.bias is not None:
                    wide.bias.copy_(module.bias)
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, wide)
            return wide
    raise ValueError("no 3-channel convolution found")


def build_detector(arch: str = "mobilenet", size: int = 128) -> nn.Module:
    """Faster R-CNN (2 classes: background, person) for 6-channel early-fused pairs, random
    weights (``weights=None, weights_backbone=None``: nothing is downloaded)."""
    factory = {"mobilenet": fasterrcnn_mobilenet_v3_large_fpn, "resnet50": fasterrcnn_resnet50_fpn}[arch]
    model = factory(weights=None, weights_backbone=None, num_classes=2, image_mean=MEAN, image_std=STD,
                    min_size=size, max_size=size)
    widen_first_conv(model.backbone, 6)
    return model


def fuse(sample: dict) -> tuple[torch.Tensor, dict]:
    """(6, H, W) early-fused image (visible channels first) and the torchvision target."""
    image = torch.cat([sample["visible"].as_subclass(torch.Tensor), sample["infrared"].as_subclass(torch.Tensor)])
    return image, {"boxes": sample["boxes"].as_subclass(torch.Tensor), "labels": sample["labels"]}


def pipeline(mag: bool, size: int | None = None) -> v2.Compose:
    steps = [] if size is None else [v2.Resize((size, size))]
    if mag:
        steps.append(ModalityAugmentV2(p=0.5))
    steps += [v2.RandomHorizontalFlip(p=0.5), v2.ToDtype(torch.float32, scale=True), v2.SanitizeBoundingBoxes()]
    return v2.Compose(steps)


# ------------------------------------------------------------------ training
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps (default 20)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--size", type=int, default=128, help="square input size in pixels (default 128)")
    parser.add_argument("--root", help="LLVIP root (visible/, infrared/, Annotations/); default: synthetic pairs")
    parser.add_argument("--split", default="train", choices=["train", "test"])
    parser.add_argument("--arch", default="mobilenet", choices=["mobilenet", "resnet50"])
    parser.add_argument("--no-mag", action="store_true", help="train without modality augmentation")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch_size < 1 or args.size < 32:
        parser.error("need --steps >= 1, --batch-size >= 1 and --size >= 32")
    return args


def main(argv: Sequence[str] | None = None) -> list[float]:
    """Train for ``--steps`` steps; prints and returns the total loss of each step."""
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    mag = not args.no_mag
    if args.root:
        from torch.utils.data import DataLoader, RandomSampler

        from mag_mmt.data import LLVIPDataset, read_llvip

        dataset = LLVIPDataset(read_llvip(args.root, args.split), transforms=pipeline(mag, args.size))
        sampler = RandomSampler(dataset, replacement=True, num_samples=args.steps * args.batch_size)
        batches = iter(DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, collate_fn=list))
    else:
        g = torch.Generator().manual_seed(args.seed)
        transform = pipeline(mag)
        batches = ([transform(synthetic_pair(args.size, g)) for _ in range(args.batch_size)] for _ in range(args.steps))

    model = build_detector(args.arch, args.size).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=1e-4)
    print(f"Faster R-CNN ({args.arch}) on early-fused visible+infrared pairs, "
          f"{'LLVIP ' + args.root if args.root else 'synthetic pairs'}, MAG {'on' if mag else 'off'}")
    history = []
    for step, batch in enumerate(batches, 1):
        images, targets = zip(*(fuse(s) for s in batch))
        losses = model(list(images), list(targets))
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        nn.utils.clip_grad_norm_(params, 10.0)
        optimizer.step()
        history.append(float(total.detach()))
        parts = " ".join(f"{k[5:]} {float(losses[k].detach()):.3f}" for k in LOSS_NAMES)
        print(f"step {step}/{args.steps} loss {history[-1]:.3f} ({parts})", flush=True)
    return history


if __name__ == "__main__":
    main(sys.argv[1:])
