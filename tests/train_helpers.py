"""A tiny synthetic training set-up shared by the checkpoint, resume and CLI tests."""

from __future__ import annotations

from pathlib import Path

import torch

from mag_mmt.data.synthetic import make_synthetic
from mag_mmt.training import TrainConfig


def small_data():
    """12 synthetic identities (6 for training), 2 images per camera."""
    return make_synthetic("demo", num_identities=12, num_train_identities=6, images_per_camera=2, seed=3)


def small_cfg(out: Path, **kw) -> TrainConfig:
    """A 2-epoch x 2-step small-CNN run writing to ``out``; ``kw`` overrides fields."""
    base = dict(data="synthetic", model="small-cnn", epochs=2, steps_per_epoch=2, num_identities=2,
                num_instances=2, seed=5, out=str(out), progress=False, device="cpu", mag_p=0.7)
    base.update(kw)
    return TrainConfig(**base)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    """Bit-identical state dicts."""
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
