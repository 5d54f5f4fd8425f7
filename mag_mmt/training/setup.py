"""The pieces a run is built from, shared by the training loop and MMGL pre-training.

Seeding (:func:`seed_everything`, :func:`augment_seed`), processes (:func:`dist_setup`), the
device (:func:`~mag_mmt.device.resolve_device`), data (:func:`load_data`, :func:`image_size`,
:func:`batch_loader`), model, loss and augmentation (:func:`build_model_for`,
:func:`build_triplet`, :func:`build_augment`), the optimiser (:func:`param_groups`,
:func:`build_optimizer`) and the input normalisation (:func:`normalize_images`,
:func:`random_flip`).

>>> import torch
>>> from mag_mmt.training import TrainConfig, build_model_for, build_optimizer, param_groups
>>> cfg = TrainConfig(model="small-cnn")
>>> model = build_model_for(cfg, num_classes=4)
>>> opt = build_optimizer(cfg.optimizer, param_groups(cfg, model), lr=cfg.lr)
>>> type(opt).__name__, opt.defaults["nesterov"]
('SGD', True)
"""

from __future__ import annotations

import dataclasses
import os
import random
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ..checkpoint import CheckpointError
from ..data.records import ReIDData
from ..device import resolve_device
from ..errors import UserError
from ..transforms import IMAGENET_MEAN, IMAGENET_STD
from .config import TrainConfig, share_point_value

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "OPTIMIZERS", "seed_everything", "augment_seed", "dist_setup", "resolve_device",
    "load_data", "image_size", "batch_loader", "build_model_for", "build_triplet", "build_augment", "param_groups",
    "build_optimizer", "normalize_images", "random_flip", "load_init",
]

#: optimisers :func:`build_optimizer` builds (``train`` takes sgd / adam, ``pretrain`` sgd / adamw)
OPTIMIZERS = ("sgd", "adam", "adamw")


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and torch (every device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_data(cfg: TrainConfig) -> ReIDData:
    """The :class:`ReIDData` named by ``cfg.data`` (readers raise clear errors)."""
    if cfg.data == "synthetic":
        from ..data.synthetic import make_synthetic

        return make_synthetic(cfg.synthetic_preset, seed=cfg.seed, **cfg.synthetic_kwargs)
    if cfg.data == "sysu":
        from ..data.sysu import read_sysu

        return read_sysu(cfg.root)
    if cfg.data == "regdb":
        from ..data.regdb import read_regdb

        return read_regdb(cfg.root, trial=cfg.regdb_trial)
    from ..data.manifest import read_manifest

    return read_manifest(cfg.root)


def image_size(cfg: TrainConfig, data: ReIDData) -> tuple[int, int]:
    """``cfg.img_size``, else 224x224 for the Swin (paper), the data's own size for synthetic
    data, 288x144 (AGW's) otherwise."""
    if cfg.img_size is not None:
        return (int(cfg.img_size[0]), int(cfg.img_size[1]))
    if cfg.model == "dual-swin":
        return (224, 224)
    if "size" in data.meta:
        return tuple(int(v) for v in data.meta["size"])  # type: ignore[return-value]
    return (288, 144)


def build_model_for(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """The model ``cfg`` names (``model``, ``share_point``, ``model_kwargs``, ``test_feature``,
    ``non_local``, ``pretrained``) with ``num_classes`` identity classes."""
    from ..models import build_model

    kwargs: dict[str, Any] = {"share_point": share_point_value(cfg.share_point), **cfg.model_kwargs}
    if cfg.test_feature is not None:
        kwargs["eval_feature"] = cfg.test_feature
    if cfg.model == "dual-resnet50" and not cfg.non_local:
        kwargs["non_local"] = False
    if cfg.model in ("dual-swin", "dual-resnet50") and cfg.pretrained:
        kwargs["pretrained_path"] = cfg.pretrained
    return build_model(cfg.model, num_classes, **kwargs)


def build_triplet(cfg: TrainConfig, cross_rank: bool = False, embedding_size: int | None = None) -> nn.Module | None:
    """The triplet term ``cfg.loss`` names (``None`` for ``"none"``); with ``cfg.memory_size``
    it is wrapped in a :class:`~mag_mmt.memory.CrossModalityMemory` of ``embedding_size``
    features (required then; the memory runs its loss with ``cross_rank`` itself)."""
    from ..losses import BatchHardTripletLoss, MultiMaskingTripletLoss, WeightedRegularizedTripletLoss

    if cfg.memory_size and cfg.loss in ("mmt", "batch-hard"):
        from ..memory import CrossModalityMemory

        if embedding_size is None:
            raise ValueError("build_triplet: memory_size is set, so embedding_size is required")
        inner = build_triplet(dataclasses.replace(cfg, memory_size=0), cross_rank=cross_rank)
        return CrossModalityMemory(inner, embedding_size=embedding_size, memory_size=cfg.memory_size)

    if cfg.loss == "mmt":
        return MultiMaskingTripletLoss(
            margin=cfg.margin, pos_margin=cfg.pos_margin, pos_weight=cfg.pos_weight,
            mman_weight=cfg.mman_weight,
            cross_rank=cross_rank, validate=False,
        )
    if cfg.loss == "batch-hard":
        return BatchHardTripletLoss(margin=cfg.margin, cross_rank=cross_rank, validate=False)
    if cfg.loss == "wrt":
        return WeightedRegularizedTripletLoss()
    if cfg.loss == "adp":
        from ..losses import AdaptiveWeightedTripletLoss

        return AdaptiveWeightedTripletLoss(validate=False)
    return None


def normalize_images(x: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation of a float ``[0, 1]`` batch (what the reference models expect)."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def random_flip(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Flip each image of ``x`` horizontally with probability 1/2 (batched, no sync)."""
    flip = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def load_init(model: nn.Module, path: str) -> dict[str, list[str]]:
    """Load a checkpoint's backbone weights into ``model`` for ``--init``.

    Works with training checkpoints and MMGL pre-training checkpoints
    (:func:`mag_mmt.pretrain.load_pretrained`). The classifier (``head.classifier``) is never
    copied: its size depends on the dataset. Returns the report of ``load_pretrained``
    (``loaded``, ``skipped``, ``missing``, ``unexpected`` keys); raises :class:`CheckpointError`
    when nothing matches.
    """
    from ..pretrain import load_pretrained

    report = load_pretrained(model, path, exclude=("head.classifier",))
    if not report["loaded"]:
        raise CheckpointError(f"{path!r} holds no weights that fit model {type(model).__name__}")
    return report


def augment_seed(seed: int, rank: int = 0) -> int:
    """Seed of rank ``rank``'s MAG / flip generator: ``seed + 1`` on rank 0 (the single-process
    value), a number derived from ``(seed, rank)`` on the others (distinct, reproducible).

    >>> from mag_mmt.training import augment_seed
    >>> augment_seed(0, 0), augment_seed(0, 1) == augment_seed(0, 1) != augment_seed(1, 1)
    (1, True)
    """
    if rank == 0:
        return seed + 1
    return int(np.random.SeedSequence([seed % 2**63, rank, 0x4D4147]).generate_state(1, np.uint64)[0]) >> 1


def dist_setup() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)``; initialises the process group under ``torchrun``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)  # NCCL collectives (all_gather_object) use the current device
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size(), local_rank


# --------------------------------------------------------------------------- augmentation pipeline, optimiser


def build_augment(cfg: TrainConfig, size: tuple[int, int], generator: torch.Generator) -> Any:
    """The ``augment="reid"`` pipeline: a :class:`~mag_mmt.transforms.CrossModalAugment` with
    ``visible_views`` visible views (the last one through ChannelExchange if ``channel_exchange``),
    a thermal view (ChannelAdapGray if ``adaptive_gray_p``), channel-wise erasing on every view,
    MAG between the first visible view and the thermal one; all draws from ``generator`` (the
    one :func:`~mag_mmt.checkpoint.rng_state` saves). ``None`` for ``augment="basic"``."""
    if cfg.augment != "reid":
        return None
    from ..augment import ModalityAugment
    from ..transforms import CrossModalAugment, ReIDTransform

    jitter = dict(zip(("brightness", "contrast", "saturation", "hue"), cfg.jitter)) if cfg.jitter else None
    common = dict(size=size, padding=cfg.pad, flip_p=0.5 if cfg.flip else 0.0, erase_p=cfg.erase_p)
    views = [ReIDTransform(jitter=jitter, **common) for _ in range(cfg.visible_views)]  # type: ignore[arg-type]
    if cfg.channel_exchange:
        views[-1] = ReIDTransform(jitter=jitter, channel="exchange", channel_gray=2, **common)  # type: ignore[arg-type]
    thermal = ReIDTransform(channel="adaptive_gray" if cfg.adaptive_gray_p > 0 else None,  # type: ignore[arg-type]
                            channel_p=cfg.adaptive_gray_p, **common)
    mag = ModalityAugment(p=cfg.mag_p, scale=cfg.mag_scale, ratio=cfg.mag_ratio) if cfg.mag else None
    return CrossModalAugment(views, thermal, mag, generator=generator)


def param_groups(cfg: TrainConfig, model: nn.Module) -> list[dict[str, Any]]:
    """Optimiser groups: one group (``backbone_lr_mult == 1``), else the backbone with
    ``lr_mult = backbone_lr_mult`` and the BNNeck + classifier (``head.*``) at the full lr (AGW)."""
    if cfg.backbone_lr_mult == 1.0:
        return [{"params": list(model.parameters())}]
    head = [p for n, p in model.named_parameters() if n.startswith("head.")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("head.")]
    return [{"params": rest, "lr_mult": cfg.backbone_lr_mult}, {"params": head, "lr_mult": 1.0}]


def build_optimizer(name: str, params: Iterable[Any], *, lr: float, momentum: float = 0.9,
                    weight_decay: float = 5e-4) -> torch.optim.Optimizer:
    """``"sgd"`` (Nesterov momentum), ``"adam"`` or ``"adamw"`` over ``params`` (tensors or
    :func:`param_groups`), with ``weight_decay`` (:class:`UserError` for another name)."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise UserError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")


def batch_loader(dataset: Any, batches: Sequence[Sequence[int]], device: torch.device,
                 num_workers: int = 0) -> Any:
    """A ``DataLoader`` over ``dataset`` (e.g. :class:`~mag_mmt.data.images.ImageDataset`) that
    yields the given index ``batches`` in order, ``num_workers`` processes decoding."""
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_sampler=batches, num_workers=num_workers, pin_memory=device.type == "cuda")
