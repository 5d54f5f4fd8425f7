"""The smallest complete use of mag-mmt: MAG + MMT in a plain PyTorch training loop.

Runs in seconds on a CPU with the embedded synthetic data (nothing is downloaded):

    python examples/quickstart.py --steps 20

Swap ``make_synthetic`` for ``read_sysu(root)`` / ``read_regdb(root)`` / ``read_manifest(csv)``
and ``small-cnn`` for ``dual-swin`` to train on real data.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from mag_mmt import ModalityAugment, MultiMaskingTripletLoss
from mag_mmt.data import CrossModalityIdentitySampler, ImageDataset, make_synthetic, split_batch
from mag_mmt.models import build_model


def main(steps: int = 20, seed: int = 0) -> float:
    torch.manual_seed(seed)
    data = make_synthetic("demo", seed=seed)
    dataset = ImageDataset(data.train, loader=data.loader)
    sampler = CrossModalityIdentitySampler(data.train, num_identities=4, num_instances=2, seed=seed,
                                           num_batches=steps)
    loader = DataLoader(dataset, batch_sampler=sampler)

    model = build_model("small-cnn", num_classes=data.num_train_identities)
    aug = ModalityAugment(p=0.5, generator=seed)              # MAG
    criterion = MultiMaskingTripletLoss(margin=0.3)            # MMT
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)

    for step, (images, labels, modalities, _cameras) in enumerate(loader):
        visible, thermal, label_v, label_t = split_batch(images, labels, modalities)
        visible, thermal = aug(visible, thermal)               # after the loader, on the device
        feat, logits = model(visible, thermal)                 # rows: visible, then thermal
        targets = torch.cat([label_v, label_t])
        mods = torch.cat([torch.zeros_like(label_v), torch.ones_like(label_t)])
        loss = F.cross_entropy(logits, targets) + criterion(feat, targets, mods)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 5 == 0:
            parts = criterion.last_parts
            print(f"step {step:3d}  loss {loss.item():.3f}  MMAN {parts.mman.item():.3f}  "
                  f"MMAP {parts.mmap.item():.3f}  valid anchors {int(parts.num_valid)}")
    return float(loss.detach())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.steps, args.seed)
