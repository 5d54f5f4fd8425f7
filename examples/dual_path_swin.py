"""The paper's reference model: a dual-path Swin Transformer trained with MAG and MMT.

A plain PyTorch training loop over the library's public API (no CLI, no ``mag_mmt.training``),
for copying into your own code. Every training value comes from the ``paper`` recipe
(``mag_mmt.recipes.RECIPES["paper"]``; docs/recipes.md lists each with its source): dual-path
Swin-T with share point F3, 224 x 224 inputs, pad + random crop + flip, MAG
(``ModalityAugment``), identity cross-entropy + the multi-masking triplet loss (MMT), SGD
(momentum 0.9, lr 0.01, weight decay 5e-4) with AGW's warm-up and steps
(:func:`mag_mmt.schedule.scheduled_lr`, as ``mag-mmt train``), P x K batches. After
training, the test split is scored with the dataset's own protocol (``ReIDData.protocol``:
SYSU-MM01 all/indoor x single/multi-shot, RegDB both directions, a manifest's NPU-ReID
settings) and the table is printed. The last model is evaluated (no model selection on a
validation split: ``mag-mmt train --recipe paper`` does that).

Quick run on the embedded synthetic data (8 train / 8 test identities, one image per camera,
P = K = 2; one to two minutes on a 2-core CPU; nothing is downloaded)::

    python examples/dual_path_swin.py --data synthetic --steps 2

Real runs (a GPU; ImageNet Swin-T weights from a local file, as the paper starts from)::

    python examples/dual_path_swin.py --data sysu --root /data/SYSU-MM01 --pretrained swin_t.pth
    python examples/dual_path_swin.py --data regdb --root /data/RegDB --trial 1 --pretrained swin_t.pth
    python examples/dual_path_swin.py --data manifest --root /data/npu_reid.csv --pretrained swin_t.pth

Flags:
    --data synthetic|sysu|regdb|manifest   the dataset; ``--root`` is its folder (manifest: the CSV).
    --trial N           RegDB split (1..10).
    --pretrained FILE   local Swin-T ImageNet weights (torchvision, timm or official layout),
                        loaded into both paths; without it the weights are random.
    --model-config swin-t|tiny-test   Swin-T (the paper) or a tiny Swin for CPU tests.
    --steps N           stop after N optimiser steps (default: the recipe's 81 epochs).
    --batch-ids P, --instances K   P identities x K images per modality per batch
                        (default: the recipe's 8 x 4; synthetic data: 2 x 2).
    --img-size H[,W]    input size (default: the recipe's 224 x 224).
    --device, --seed, --workers    where to run, the seed of everything, DataLoader workers.
    --save FILE         write the trained model's ``state_dict`` there.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from mag_mmt import ModalityAugment, MultiMaskingTripletLoss
from mag_mmt.data import (
    CrossModalityIdentitySampler,
    ImageDataset,
    ReIDData,
    make_synthetic,
    read_manifest,
    read_regdb,
    read_sysu,
)
from mag_mmt.device import resolve_device
from mag_mmt.evaluation import (
    ProtocolResult,
    evaluate_dataset,
    extract_features,
    format_table,
)
from mag_mmt.models import SWIN_T_CONFIG, SWIN_TINY_TEST_CONFIG, DualPathSwin
from mag_mmt.recipes import recipe_values
from mag_mmt.schedule import scheduled_lr
from mag_mmt.transforms import CrossModalAugment, ReIDTransform, normalize

PAPER = recipe_values("paper")
MODEL_CONFIGS = {"swin-t": SWIN_T_CONFIG, "tiny-test": SWIN_TINY_TEST_CONFIG}
# the quick synthetic set: small enough to evaluate Swin-T at 224 x 224 on a CPU
SYNTHETIC = dict(num_identities=16, num_train_identities=8, images_per_camera=1)


def load_data(name: str, root: str | None, trial: int, seed: int) -> ReIDData:
    """The dataset ``name``; each reader sets ``data.protocol`` for :func:`evaluate`."""
    if name == "synthetic":
        return make_synthetic("demo", seed=seed, **SYNTHETIC)
    if root is None:
        raise SystemExit(f"--root is required with --data {name}")
    if name == "sysu":
        return read_sysu(root)
    if name == "regdb":
        return read_regdb(root, trial=trial)
    return read_manifest(root)


def evaluate(model: torch.nn.Module, data: ReIDData, size: tuple[int, int], device: torch.device
             ) -> dict[str, ProtocolResult]:
    """Test features of ``data.query`` / ``data.gallery``, scored with ``data.protocol``."""

    def features(samples):
        return extract_features(model, samples, loader=data.loader, size=size, device=device,
                                transform=lambda x: normalize(x[None])[0])

    qf = features(data.query)
    gf = qf if data.gallery == data.query else features(data.gallery)
    # SYSU-MM01 / synthetic: thermal -> visible, all/indoor x single/multi-shot; RegDB: both
    # directions; manifests (NPU-ReID): both directions x all/per-scene x single/multi-shot
    return evaluate_dataset(qf, gf, data, full=True)


def main(argv: list[str] | None = None) -> dict[str, ProtocolResult]:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    device = resolve_device(args.device)  # None: CUDA when available, else the CPU
    synthetic = args.data == "synthetic"
    P = args.batch_ids or (2 if synthetic else PAPER["num_identities"])
    K = args.instances or (2 if synthetic else PAPER["num_instances"])
    size = args.img_size or PAPER["img_size"]

    # data: P identities x K images per modality per batch, visible half first
    data = load_data(args.data, args.root, args.trial, args.seed)
    dataset = ImageDataset(data.train, loader=data.loader, size=size)  # float (3, H, W) in [0, 1]
    sampler = CrossModalityIdentitySampler(data.train, num_identities=P, num_instances=K, seed=args.seed,
                                           epoch_unit=PAPER["epoch_unit"])
    workers = args.workers if args.workers is not None else (0 if synthetic else min(4, os.cpu_count() or 1))
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda")

    # model: dual-path Swin, modality-specific up to the share point, BNNeck head
    model = DualPathSwin(data.num_train_identities, share_point=PAPER["share_point"], img_size=size,
                         pretrained_path=args.pretrained, eval_feature=PAPER["test_feature"],
                         **MODEL_CONFIGS[args.model_config]).to(device)
    if model.pretrained_report is not None:
        print(model.pretrained_report)

    # augmentation on the device: pad + crop and flip per modality, MAG between the pair, normalise
    # (the recipe's colour jitter, channel operations and second visible view are off)
    view = dict(size=size, padding=PAPER["pad"], flip_p=0.5 if PAPER["flip"] else 0.0, erase_p=PAPER["erase_p"])
    mag = ModalityAugment(p=PAPER["mag_p"], scale=PAPER["mag_scale"], ratio=PAPER["mag_ratio"]) if PAPER["mag"] else None
    augment = CrossModalAugment(ReIDTransform(**view), ReIDTransform(**view), mag, generator=args.seed + 1)

    # losses and optimiser
    mmt = MultiMaskingTripletLoss(margin=PAPER["margin"], pos_margin=PAPER["pos_margin"],
                                  pos_weight=PAPER["pos_weight"], mman_weight=PAPER["mman_weight"])
    # one learning rate for all (backbone_lr_mult 1); Nesterov as `mag-mmt train` (AGW's train.py)
    optimizer = torch.optim.SGD(model.parameters(), lr=PAPER["lr"], momentum=PAPER["momentum"],
                                weight_decay=PAPER["weight_decay"], nesterov=True)
    # the recipe's schedule (warm-up, then x0.1 at each milestone), stepped once per optimiser step
    steps_per_epoch = len(sampler)
    schedule = dict(warmup_epochs=PAPER["warmup_epochs"], warmup_mode=PAPER["warmup_mode"],
                    milestones=PAPER["milestones"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: scheduled_lr(1.0, s // steps_per_epoch, s % steps_per_epoch, steps_per_epoch, **schedule))

    print(f"{args.data}: {len(data.train)} training images, {data.num_train_identities} identities; "
          f"batch {P} x {K} x 2 at {size[0]}x{size[1]}, {len(sampler)} steps per epoch, device {device}")
    step = 0
    model.train()
    for epoch in range(PAPER["epochs"]):
        sampler.set_epoch(epoch)
        for images, labels, modalities, _cameras in loader:
            images, labels, modalities = (t.to(device, non_blocking=True) for t in (images, labels, modalities))
            half = images.shape[0] // 2  # P*K visible images, then their P*K thermal partners
            visible, thermal = augment(images[:half], images[half:])
            feat, logits = model(visible, thermal)  # (2B, D), (2B, C): visible rows, then thermal
            id_loss = F.cross_entropy(logits, labels)
            tri_loss = mmt(feat, labels, modalities)  # modalities: 0 visible, 1 thermal
            loss = PAPER["id_weight"] * id_loss + PAPER["triplet_weight"] * tri_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % args.log_every == 0 or step == args.steps:
                print(f"epoch {epoch + 1} step {step}  loss {loss.item():.4f}  id {id_loss.item():.4f}  "
                      f"mmt {tri_loss.item():.4f}  lr {optimizer.param_groups[0]['lr']:.2e}")
            scheduler.step()
            if step == args.steps:
                break
        if step == args.steps:
            break

    if args.save:
        torch.save(model.state_dict(), args.save)
        print(f"model saved to {args.save}")
    results = evaluate(model, data, size, device)
    print(format_table(results))
    name, main_result = next(iter(results.items()))
    summary = main_result.summary(ranks=(1,))
    print(f"{name}: rank-1 {100 * summary['rank-1'][0]:.2f}%  mAP {100 * summary['mAP'][0]:.2f}%  "
          f"mINP {100 * summary['mINP'][0]:.2f}%")
    return results


def image_size(text: str) -> tuple[int, int]:
    values = [int(v) for v in text.split(",")]
    if len(values) not in (1, 2) or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected H or H,W with positive integers, got {text!r}")
    return (values[0], values[-1])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("synthetic", "sysu", "regdb", "manifest"), default="synthetic")
    parser.add_argument("--root", help="dataset folder (manifest: the CSV file)")
    parser.add_argument("--trial", type=int, default=1, help="RegDB split")
    parser.add_argument("--pretrained", help="local Swin-T ImageNet weights (nothing is downloaded)")
    parser.add_argument("--model-config", choices=tuple(MODEL_CONFIGS), default="swin-t")
    parser.add_argument("--steps", type=int, help="stop after this many steps (default: the recipe's epochs)")
    parser.add_argument("--batch-ids", "-P", type=int, help="identities per batch (P)")
    parser.add_argument("--instances", "-K", type=int, help="images per identity and modality (K)")
    parser.add_argument("--img-size", type=image_size, help="H or H,W (default 224)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, help="DataLoader workers (default: 0 synthetic, up to 4 otherwise)")
    parser.add_argument("--log-every", type=int, default=20, help="print the losses every N steps")
    parser.add_argument("--save", help="write the trained state_dict to this file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()
