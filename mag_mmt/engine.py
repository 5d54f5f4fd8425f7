"""Training and evaluation loops: what ``mag-mmt train``, ``eval`` and ``demo`` run.

The command line only parses arguments into a :class:`TrainConfig` and calls
:func:`train` / :func:`evaluate_checkpoint`; everything else lives here, so a script can do
the same in three lines::

    from mag_mmt.engine import TrainConfig, train
    result = train(TrainConfig(data="synthetic", model="small-cnn", epochs=5, out="runs/demo"))
    print(result.history[-1])

One training step (docs/method.md describes each part)::

    batch (2PK images: P*K visible then P*K thermal, visible i ~ thermal i)
      -> device -> random horizontal flip -> MAG (ModalityAugment) -> normalise
      -> model(visible, thermal) -> (feat, logits)
      -> loss = id_weight * CE(logits, labels) + triplet_weight * triplet(feat, labels, modalities)

With ``augment="reid"`` (every ``--recipe``, docs/recipes.md) the flip/MAG/normalise part is
the batched :class:`~mag_mmt.transforms.CrossModalAugment` instead: pad + crop, flip, jitter,
MAG, normalise, channel-wise erasing and CAJ's channel operations, with ``visible_views``
visible views per pair. With ``val`` set, ``eval_every`` scores a validation split (never the
test set) and keeps the best epoch as ``OUT/best.pt``.

**Epochs.** By default (``epoch_unit="images"``) an epoch is AGW's and CAJ's: one pass over
the larger modality's training images, shared by all ranks, i.e.
``ceil(max(n_visible, n_thermal) / (P * K * world_size))`` steps per rank. ``"identities"``
gives the shorter per-identity epoch (every identity once: ``ceil(C / (P * world_size))``
steps); ``steps_per_epoch`` overrides both.

**Checkpoints** (``OUT/last.pt``) are written atomically every ``checkpoint_every`` steps and
at the end of every epoch; they hold the model, the optimiser, the scheduler position, the
position in the epoch and every random state of every rank (plain data: see
:mod:`mag_mmt.checkpoint`), so ``resume=True`` continues a killed run and gives the same
weights as a run that was never stopped. Resuming checks that the run is the same: the
configuration fields that shape training (data, model, loss, batch, optimiser, seed, ...;
all but :data:`RESUME_MAY_CHANGE`), the number of classes and images, and the number of
processes; a difference is a :class:`~mag_mmt.errors.UserError` naming the fields.

**Logs**: ``OUT/history.csv`` and ``history.json`` (a row every ``log_every`` steps and one per
epoch), TensorBoard events in ``OUT/tensorboard/`` when tensorboard is installed, and
``OUT/curves.png`` at the end (:mod:`mag_mmt.runlog`, docs/logging.md); rank 0 writes them.

**Several processes** (``torchrun``): every rank draws its own MAG boxes and flips, from a
generator seeded with :func:`augment_seed` ``(seed, rank)``; rank 0 keeps ``seed + 1``, the
single-process value.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .data.records import DATASET_PROTOCOLS, ReIDData, Sample
from .data.sampler import EPOCH_UNITS
from .errors import UserError

DATASETS = ("synthetic", "sysu", "regdb", "manifest")
LOSSES = ("mmt", "batch-hard", "wrt", "adp", "none")
PROTOCOLS = DATASET_PROTOCOLS  # evaluation protocols: sysu, regdb, npu
#: TrainConfig fields that may differ when a run is resumed (they do not change what is trained)
RESUME_MAY_CHANGE = frozenset({
    "epochs", "max_steps", "checkpoint_every", "eval_every", "eval_trials", "progress", "num_workers",
    "device", "amp", "out", "resume", "pretrained", "init", "log_every", "test_feature", "select_metric",
})
AUGMENTS = ("basic", "reid")
VAL_SPLITS = ("none", "auto", "dataset", "holdout")
SELECT_METRICS = ("rank1", "mAP", "mINP")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class TrainConfig:
    """Everything a training run depends on. Defaults: paper settings where the paper gives
    them (SGD, momentum 0.9, weight decay 5e-4, lr 0.01), ours elsewhere."""

    # data
    data: str = "synthetic"
    root: str | None = None
    synthetic_preset: str = "demo"
    synthetic_kwargs: dict[str, Any] = field(default_factory=dict)  # make_synthetic overrides (num_identities, ...)
    regdb_trial: int = 1
    img_size: tuple[int, int] | None = None  # default: 224x224 for dual-swin, 288x144 real, data size synthetic
    num_identities: int = 8  # P
    num_instances: int = 4  # K
    num_workers: int = 0
    # model
    model: str = "small-cnn"
    share_point: str = "F3"
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # more constructor arguments (widths, eval_feature, ...)
    pretrained: str | None = None  # torchvision swin_t / resnet50 weights (local file)
    init: str | None = None  # a mag-mmt checkpoint (train or MMGL pre-train) to start from
    # loss
    loss: str = "mmt"
    margin: float = 0.3
    pos_margin: float = 0.1
    pos_weight: float = 1.0  # lambda: weight of MMAP (MMT only)
    mman_weight: float = 1.0  # weight of MMAN (MMT only); 0 = MMAP alone
    id_weight: float = 1.0
    triplet_weight: float = 1.0
    memory_size: int = 0  # rows of a cross-modality memory around the triplet loss (mmt, batch-hard); 0 = off
    # augmentation
    mag: bool = True
    mag_p: float = 0.5
    mag_scale: tuple[float, float] = (0.02, 0.4)
    mag_ratio: tuple[float, float] = (0.3, 3.3)
    flip: bool = True
    # recipe and augmentation pipeline (mag_mmt.recipes, mag_mmt.transforms)
    recipe: str | None = None  # the named recipe the other fields came from (a record; set by resolve_recipe)
    augment: str = "basic"  # "basic": flip -> MAG -> normalise; "reid": ReIDTransform views + MAG
    pad: int = 10  # "reid": Pad(pad) + RandomCrop(img_size)
    erase_p: float = 0.0  # "reid": ChannelRandomErasing probability on every view
    channel_exchange: bool = False  # "reid": ChannelExchange(gray=2) on the last visible view
    adaptive_gray_p: float = 0.0  # "reid": ChannelAdapGray probability on the thermal view (0: off)
    jitter: tuple[float, float, float, float] | None = None  # "reid": brightness, contrast, saturation, hue
    visible_views: int = 1  # "reid": visible views per pair (CAJ: 2)
    non_local: bool = True  # dual-resnet50: AGW's non-local blocks
    test_feature: str | None = None  # "bn" | "pool": eval-mode feature (default: the model's, "bn")
    # model selection on a validation split (never the test set)
    val: str = "none"  # "auto": the dataset's val split, else held-out identities; "dataset"; "holdout"
    val_identities: float = 0.1  # "holdout": N >= 1 identities, or a fraction in (0, 1)
    select_metric: str = "rank1"  # validation metric that picks best.pt
    # optimisation
    epochs: int = 10
    epoch_unit: str = "images"  # "images": one pass over the larger modality (AGW); "identities": each id once
    steps_per_epoch: int | None = None  # default: the sampler's epoch length (epoch_unit)
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 0
    warmup_mode: str = "linear"  # "linear": per step from 0.1 lr; "staircase": lr * (epoch + 1) / warmup (AGW)
    backbone_lr_mult: float = 1.0  # backbone lr = lr * this; the BNNeck and classifier get lr (AGW: 0.1)
    milestones: tuple[int, ...] = ()  # epochs where lr is multiplied by 0.1
    amp: bool | None = None  # default: on for CUDA
    # run
    seed: int = 0
    device: str | None = None
    out: str = "runs/train"
    resume: bool = False
    checkpoint_every: int = 0  # steps; 0 = end of each epoch only
    max_steps: int | None = None  # stop (and checkpoint) after this many steps in all
    eval_every: int = 0  # epochs; 0 = never during training
    eval_trials: int = 10
    progress: bool = True
    log_every: int = 10  # steps per row of OUT/history.csv (mag_mmt.runlog)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        cfg = cls(**{k: v for k, v in values.items() if k in known})
        for name in ("img_size", "mag_scale", "mag_ratio", "milestones", "jitter"):
            value = getattr(cfg, name)
            if isinstance(value, list):
                setattr(cfg, name, tuple(value))
        return cfg

    def validate(self) -> None:
        """Check the configuration before any work starts (:class:`UserError` names the field)."""
        check_data_source(self.data, self.root)
        from .models import MODELS

        if self.model not in MODELS:
            raise UserError(f"unknown model {self.model!r}; choose one of {', '.join(sorted(MODELS))}")
        if self.loss not in LOSSES:
            raise UserError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.optimizer not in ("sgd", "adam"):
            raise UserError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        for name in ("epochs", "num_identities", "num_instances"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.epoch_unit not in EPOCH_UNITS:
            raise UserError(f"epoch_unit must be one of {', '.join(EPOCH_UNITS)}, got {self.epoch_unit!r}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise UserError(f"steps_per_epoch must be >= 1, got {self.steps_per_epoch}")
        if self.log_every < 1:
            raise UserError(f"log_every must be >= 1, got {self.log_every}")
        if self.max_steps is not None and self.max_steps < 1:
            raise UserError(f"max_steps must be >= 1, got {self.max_steps}")
        for name in ("mman_weight", "pos_weight"):
            if not 0.0 <= getattr(self, name) < math.inf:  # NaN fails too
                raise UserError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.mag_p <= 1.0:
            raise UserError(f"mag_p must be in [0, 1], got {self.mag_p}")
        if self.lr <= 0:
            raise UserError(f"lr must be > 0, got {self.lr}")
        for name in ("pretrained", "init"):
            value = getattr(self, name)
            if value is not None and not Path(value).is_file():
                raise UserError(f"--{name} file {value!r} does not exist")
        if not isinstance(self.model_kwargs, dict) or not all(isinstance(k, str) for k in self.model_kwargs):
            raise UserError(f"model_kwargs must be a dict of keyword arguments, got {self.model_kwargs!r}")
        reserved = {"num_classes", "share_point", "pretrained_path"} & set(self.model_kwargs)
        if reserved:
            raise UserError(f"model_kwargs may not set {sorted(reserved)}: they have their own fields")
        if self.img_size is not None and (len(self.img_size) != 2 or min(self.img_size) < 8):
            raise UserError(f"img_size (--img-size) must be (H, W) with H, W >= 8, got {self.img_size}")
        self._validate_recipe_fields()
        self.check_memory_size(world_size=1)

    def _validate_recipe_fields(self) -> None:
        """Checks of the recipe, pipeline and selection fields (``UserError`` names the field)."""
        from .models.heads import parse_share_point

        choices = {"augment": AUGMENTS, "val": VAL_SPLITS, "select_metric": SELECT_METRICS,
                   "warmup_mode": ("linear", "staircase"), "test_feature": (None, "bn", "pool")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UserError(f"{name} must be one of {', '.join(map(str, allowed))}, got {getattr(self, name)!r}")
        if self.recipe is not None:
            from .recipes import RECIPES

            if self.recipe not in RECIPES:
                raise UserError(f"unknown recipe {self.recipe!r}; choose one of {', '.join(RECIPES)}")
        try:
            parse_share_point(share_point_value(self.share_point))
        except ValueError as exc:
            raise UserError(f"share_point: {exc} (or 'stem': the stem only)") from None
        for name in ("erase_p", "adaptive_gray_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.pad < 0 or self.visible_views not in (1, 2):
            raise UserError(f"pad must be >= 0 and visible_views 1 or 2, got {self.pad} and {self.visible_views}")
        if self.jitter is not None and len(self.jitter) != 4:
            raise UserError(f"jitter must be (brightness, contrast, saturation, hue), got {self.jitter!r}")
        if self.backbone_lr_mult <= 0:
            raise UserError(f"backbone_lr_mult must be > 0, got {self.backbone_lr_mult}")
        if self.val_identities <= 0 or (self.val_identities >= 1 and self.val_identities != int(self.val_identities)):
            raise UserError(f"val_identities must be an integer >= 1 or a fraction in (0, 1), got {self.val_identities}")
        if self.val != "none" and self.eval_every < 1:
            raise UserError(f"val={self.val!r} selects on validation every eval_every epochs: set eval_every >= 1")
        if self.augment == "basic" and (self.erase_p or self.channel_exchange or self.adaptive_gray_p
                                        or self.jitter or self.visible_views != 1):
            raise UserError("erasing, channel exchange, adaptive gray, jitter and a second visible view need "
                            "augment='reid' (--augment reid)")

    def check_memory_size(self, world_size: int) -> None:
        """``memory_size`` (``--memory-size``) is 0, or holds the global batch of ``world_size``
        processes (``2 * P * K`` each; ``3 * P * K`` with two visible views) with a loss the memory can wrap (:class:`UserError`)."""
        n = self.memory_size
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise UserError(f"memory_size (--memory-size) must be an int >= 0 (0 = no memory), got {n!r}")
        if n == 0:
            return
        if self.loss not in ("mmt", "batch-hard"):
            raise UserError(f"memory_size (--memory-size {n}) needs --loss mmt or batch-hard (the memory relies "
                            f"on max/min mining), not --loss {self.loss}")
        views = self.visible_views + 1  # rows per identity and instance: the visible views and the thermal image
        batch = views * self.num_identities * self.num_instances * world_size
        if n < batch:
            raise UserError(f"memory_size (--memory-size {n}) must be at least the global batch, {views} x P x K"
                            + (f" x {world_size} processes" if world_size > 1 else "") + f" = {batch}")


def check_data_source(data: str, root: str | None) -> None:
    """``data`` names a known dataset and ``root`` exists where it needs one (:class:`UserError`)."""
    if data not in DATASETS:
        raise UserError(f"unknown dataset {data!r}; choose one of {', '.join(DATASETS)}")
    if data == "synthetic":
        return
    if not root:
        raise UserError(f"--root is required with --data {data}")
    path = Path(root)
    if data == "manifest" and not path.is_file():
        raise UserError(f"--root: manifest file {root!r} does not exist")
    if data != "manifest" and not path.is_dir():
        raise UserError(f"--root: dataset root {root!r} is not a folder")


@dataclass
class TrainResult:
    """What :func:`train` returns: the model, the data it used and one row per epoch."""

    model: nn.Module
    data: ReIDData
    config: TrainConfig
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint: Path | None = None
    stopped_early: bool = False
    best_checkpoint: Path | None = None  # OUT/best.pt, chosen on the validation split (cfg.val)
    selection: dict[str, Any] | None = None  # {"metric", "value", "epoch"} of best.pt


# --------------------------------------------------------------------------- building blocks


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str | None) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but CUDA is not available")
    return device


def load_data(cfg: TrainConfig) -> ReIDData:
    """The :class:`ReIDData` named by ``cfg.data`` (readers raise clear errors)."""
    if cfg.data == "synthetic":
        from .data.synthetic import make_synthetic

        return make_synthetic(cfg.synthetic_preset, seed=cfg.seed, **cfg.synthetic_kwargs)
    if cfg.data == "sysu":
        from .data.sysu import read_sysu

        return read_sysu(cfg.root)
    if cfg.data == "regdb":
        from .data.regdb import read_regdb

        return read_regdb(cfg.root, trial=cfg.regdb_trial)
    from .data.manifest import read_manifest

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


def share_point_value(share_point: str | int) -> str | int:
    """``"stem"`` -> 1 (the stem only is modality-specific, AGW's split), ``"2"`` -> 2; others as given.

    >>> share_point_value("stem"), share_point_value("1"), share_point_value("F3")
    (1, 1, 'F3')
    """
    text = str(share_point).strip().lower()
    if text == "stem":
        return 1
    return int(text) if text.isdigit() else share_point


def build_model_for(cfg: TrainConfig, num_classes: int) -> nn.Module:
    from .models import build_model

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
    from .losses import BatchHardTripletLoss, MultiMaskingTripletLoss, WeightedRegularizedTripletLoss

    if cfg.memory_size and cfg.loss in ("mmt", "batch-hard"):
        from .memory import CrossModalityMemory

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
        from .losses import AdaptiveWeightedTripletLoss

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

    Works with training checkpoints and MMGL pre-training checkpoints. The classifier
    (``head.classifier``) is never copied: its size depends on the dataset. Returns the
    missing and unexpected keys; raises :class:`CheckpointError` when nothing matches.
    """
    state = load_checkpoint(path)
    weights = state["model"]
    own = model.state_dict()
    usable = {
        k: v for k, v in weights.items()
        if k in own and not k.startswith("head.classifier") and own[k].shape == v.shape
    }
    if not usable:
        raise CheckpointError(f"{path!r} holds no weights that fit model {type(model).__name__}")
    missing, unexpected = model.load_state_dict(usable, strict=False)
    return {"loaded": sorted(usable), "missing": list(missing), "unexpected": list(unexpected)}


def _lr_at(cfg: TrainConfig, epoch: int, step_in_epoch: int, steps_per_epoch: int) -> float:
    """Warm-up over ``warmup_epochs`` (linear per step from 0.1 lr, or AGW's per-epoch staircase
    ``lr * (epoch + 1) / warmup_epochs``), then x0.1 at every milestone passed."""
    lr = cfg.lr
    if cfg.warmup_mode == "staircase" and epoch < cfg.warmup_epochs:
        lr *= (epoch + 1) / cfg.warmup_epochs
    elif cfg.warmup_epochs > 0 and epoch < cfg.warmup_epochs:
        progress = (epoch * steps_per_epoch + step_in_epoch + 1) / (cfg.warmup_epochs * steps_per_epoch)
        lr *= 0.1 + 0.9 * min(1.0, progress)
    lr *= 0.1 ** sum(epoch >= m for m in cfg.milestones)
    return lr


def augment_seed(seed: int, rank: int = 0) -> int:
    """Seed of rank ``rank``'s MAG / flip generator: ``seed + 1`` on rank 0 (the single-process
    value), a number derived from ``(seed, rank)`` on the others (distinct, reproducible).

    >>> from mag_mmt.engine import augment_seed
    >>> augment_seed(0, 0), augment_seed(0, 1) == augment_seed(0, 1) != augment_seed(1, 1)
    (1, True)
    """
    if rank == 0:
        return seed + 1
    return int(np.random.SeedSequence([seed % 2**63, rank, 0x4D4147]).generate_state(1, np.uint64)[0]) >> 1


def gather_rng_states(aug_gen: torch.Generator) -> list[dict[str, Any]]:
    """Every rank's :func:`~mag_mmt.checkpoint.rng_state` in rank order (a collective under DDP)."""
    state = rng_state(aug_gen)
    from .distributed import is_distributed

    if not is_distributed():
        return [state]
    import torch.distributed as dist

    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, state)
    return states


def config_differences(saved: TrainConfig, now: TrainConfig) -> list[str]:
    """``"field: saved -> now"`` for every field outside :data:`RESUME_MAY_CHANGE` that differs."""
    a, b = saved.to_dict(), now.to_dict()
    out = []
    for name in (f.name for f in dataclasses.fields(TrainConfig)):
        if name in RESUME_MAY_CHANGE:
            continue
        x, y = a.get(name), b.get(name)
        if name == "root" and x and y:
            x, y = os.path.realpath(x), os.path.realpath(y)
        if x != y:
            out.append(f"{name}: {a.get(name)!r} -> {b.get(name)!r}")
    return out


def _check_resumable(path: Path, state: dict[str, Any], cfg: TrainConfig) -> None:
    """Raise :class:`UserError` if ``cfg`` is not the run that wrote ``state`` (config fields)."""
    diffs = config_differences(TrainConfig.from_dict(state["config"]), cfg)
    if diffs:
        raise UserError(
            f"cannot resume {path}: it was written by a run with another configuration ({'; '.join(diffs)}). "
            f"Resume with the same settings, or start a new run (another --out; --init {path} starts from its weights)"
        )


def _check_same_run(path: Path, state: dict[str, Any], **now: Any) -> None:
    """Raise :class:`UserError` if what the data and launch give (classes, images, input size,
    processes) differs from what ``state`` recorded (entries it lacks are not checked)."""
    saved = {
        "num_classes": state.get("num_classes"),
        "num_train_images": state.get("num_train_images"),
        "image_size": tuple(state["image_size"]) if "image_size" in state else None,
        "world_size": state["rng"].get("world_size") if isinstance(state.get("rng"), dict) else None,
    }
    diffs = [f"{name}: {saved[name]!r} -> {value!r}" for name, value in now.items()
             if saved.get(name) is not None and saved[name] != value]
    if not diffs:
        return
    hint = "the dataset changed"
    if saved["world_size"] is not None and saved["world_size"] != now.get("world_size"):
        hint = (f"it was written by {saved['world_size']} process(es), each with its own random state: resume with "
                f"the same number (torchrun --nproc_per_node {saved['world_size']}, or no torchrun for 1)")
    raise UserError(
        f"cannot resume {path}: the run differs from the one that wrote it ({'; '.join(diffs)}); {hint}. "
        f"Or start a new run (another --out; --init {path} starts from its weights)"
    )


# --------------------------------------------------------------------------- distributed


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


# --------------------------------------------------------------------------- recipes: pipeline, lr groups, validation


def build_augment(cfg: TrainConfig, size: tuple[int, int], generator: torch.Generator) -> Any:
    """The ``augment="reid"`` pipeline: a :class:`~mag_mmt.transforms.CrossModalAugment` with
    ``visible_views`` visible views (the last one through ChannelExchange if ``channel_exchange``),
    a thermal view (ChannelAdapGray if ``adaptive_gray_p``), channel-wise erasing on every view,
    MAG between the first visible view and the thermal one; all draws from ``generator`` (the
    one :func:`~mag_mmt.checkpoint.rng_state` saves). ``None`` for ``augment="basic"``."""
    if cfg.augment != "reid":
        return None
    from .augment import ModalityAugment
    from .transforms import CrossModalAugment, ReIDTransform

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


def split_validation(cfg: TrainConfig, data: ReIDData) -> tuple[ReIDData, list[Sample], list[Sample]]:
    """Hold the validation identities out of ``data.train``: ``(data with the remaining train
    identities relabelled 0..C'-1, val thermal queries, val visible gallery)``.

    ``cfg.val``: ``"dataset"`` uses the dataset's own split (SYSU-MM01 ``exp/val_id.txt``, which
    AGW trains on; a manifest's ``val`` rows) and fails without one; ``"holdout"`` holds out
    ``val_identities`` training identities (N, or a fraction), drawn with ``cfg.seed``;
    ``"auto"``: the dataset's split where there is one, else the hold-out. ``data.query`` and
    ``data.gallery`` (the test set) are untouched and never read here.
    """
    from .data.records import VISIBLE, relabel

    id_map = data.meta.get("train_id_map") or {}
    own: list[Sample] = []
    source = ""
    if cfg.val in ("auto", "dataset") and data.meta.get("val_ids") and id_map:
        val_labels = {id_map[i] for i in data.meta["val_ids"] if i in id_map}
        own = [s for s in data.train if s.identity in val_labels]
        train = [s for s in data.train if s.identity not in val_labels]
        source = f"the dataset's val split ({len(val_labels)} identities)"
    elif cfg.val in ("auto", "dataset") and data.meta.get("val"):
        own, train, source = list(data.meta["val"]), list(data.train), "the manifest's val rows"
    elif cfg.val == "dataset":
        raise UserError(f"--val dataset: {data.name} has no validation split (SYSU-MM01 exp/val_id.txt or "
                        "manifest 'val' rows); use --val holdout --val-identities N")
    else:
        labels = sorted({s.identity for s in data.train})
        n = int(cfg.val_identities) if cfg.val_identities >= 1 else max(2, round(cfg.val_identities * len(labels)))
        if n > len(labels) - 2:
            raise UserError(f"--val-identities {cfg.val_identities}: holding out {n} of {len(labels)} training "
                            "identities leaves fewer than 2 to train on")
        held = {labels[i] for i in np.random.RandomState(cfg.seed % 2**32).permutation(len(labels))[:n]}
        own = [s for s in data.train if s.identity in held]
        train = [s for s in data.train if s.identity not in held]
        source = f"{n} held-out training identities"
    query = [s for s in own if s.modality != VISIBLE]
    gallery = [s for s in own if s.modality == VISIBLE]
    if not query or not gallery:
        raise UserError(f"validation split ({source}) needs thermal and visible images, got "
                        f"{len(query)} thermal and {len(gallery)} visible")
    train, new_map = relabel(train)
    meta = {**data.meta, "train_id_map": {k: new_map[v] for k, v in id_map.items() if v in new_map} if id_map else new_map,
            "validation": source}
    return dataclasses.replace(data, train=train, meta=meta), query, gallery


def evaluate_validation(model: nn.Module, data: ReIDData, query: Sequence[Sample], gallery: Sequence[Sample],
                        size: tuple[int, int], device: torch.device | None = None) -> dict[str, float]:
    """``val_rank1``, ``val_mAP``, ``val_mINP``: thermal queries against the whole visible
    gallery of the validation identities (euclidean distance, standard CMC)."""
    from .evaluation import rank_metrics
    from .evaluation.protocols import distance_matrix

    qf = features(model, query, data, size, device)
    gf = features(model, gallery, data, size, device)
    res = rank_metrics(distance_matrix(qf, gf), [s.identity for s in query], [s.identity for s in gallery],
                       protocol="standard")
    return {"val_rank1": float(res.cmc[0]), "val_mAP": float(res.mAP), "val_mINP": float(res.mINP)}


# --------------------------------------------------------------------------- training


def train(cfg: TrainConfig, data: ReIDData | None = None, log: Callable[[str], None] | None = print) -> TrainResult:
    """Train a model as ``cfg`` says; see the module docstring for the step.

    ``data`` may be passed to reuse already loaded data (the demo trains four arms on one
    synthetic set). Returns a :class:`TrainResult`; the last checkpoint is ``OUT/last.pt``.
    """
    from torch.utils.data import DataLoader

    from .augment import ModalityAugment
    from .data.images import ImageDataset
    from .data.sampler import CrossModalityIdentitySampler

    cfg.validate()
    log = log or (lambda _msg: None)
    rank, world, local_rank = dist_setup()
    if rank != 0:
        log = lambda _msg: None  # noqa: E731  (one process reports)
    device = resolve_device(cfg.device) if world == 1 or not torch.cuda.is_available() else torch.device("cuda", local_rank)
    if world > 1 and device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL collectives (the RNG-state gather) use the current device
    out = Path(cfg.out)
    ckpt_path = out / "last.pt"
    state: dict[str, Any] | None = None
    if cfg.resume and ckpt_path.exists():  # read and checked before any data is loaded
        state = load_checkpoint(ckpt_path, map_location="cpu", kind="train")
        _check_resumable(ckpt_path, state, cfg)
    elif cfg.resume:
        log(f"--resume: no checkpoint at {ckpt_path}, starting from scratch")
    seed_everything(cfg.seed)
    if data is None:
        data = load_data(cfg)
    val_query: list[Sample] = []
    val_gallery: list[Sample] = []
    if cfg.val != "none":
        data, val_query, val_gallery = split_validation(cfg, data)
        log(f"model selection on {data.meta['validation']}: {len(val_query)} thermal queries, "
            f"{len(val_gallery)} visible gallery images")
    size = image_size(cfg, data)
    num_classes = data.num_train_identities
    num_train_images = len(data.train)
    if state is not None:
        _check_same_run(ckpt_path, state, num_classes=num_classes, num_train_images=num_train_images,
                        image_size=tuple(size), world_size=world)

    model = build_model_for(cfg, num_classes).to(device)
    if cfg.init and state is None:
        info = load_init(model, cfg.init)
        log(f"init: {len(info['loaded'])} tensors from {cfg.init}")
    if rank > 0:  # the model is initialised alike on every rank; from here on each rank draws its own numbers
        seed_everything(augment_seed(cfg.seed, rank))
    cfg.check_memory_size(world)
    criterion = build_triplet(cfg, cross_rank=world > 1, embedding_size=model.feature_dim)
    if criterion is not None:
        criterion = criterion.to(device)  # a memory's queue is made of buffers
    if cfg.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            param_groups(cfg, model), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True
        )
    else:
        optimizer = torch.optim.Adam(param_groups(cfg, model), lr=cfg.lr, weight_decay=cfg.weight_decay)
    amp = cfg.amp if cfg.amp is not None else device.type == "cuda"
    amp_dtype = torch.bfloat16 if device.type == "cpu" or torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=amp and amp_dtype == torch.float16)

    dataset = ImageDataset(data.train, loader=data.loader, size=size)
    sampler = CrossModalityIdentitySampler(
        data.train, num_identities=cfg.num_identities, num_instances=cfg.num_instances,
        seed=cfg.seed, rank=rank, world_size=world, num_batches=cfg.steps_per_epoch, epoch_unit=cfg.epoch_unit,
    )
    steps_per_epoch = len(sampler)
    aug_gen = torch.Generator(device=device).manual_seed(augment_seed(cfg.seed, rank))
    mag = ModalityAugment(p=cfg.mag_p, scale=cfg.mag_scale, ratio=cfg.mag_ratio, generator=aug_gen) if cfg.mag else None
    pipeline = build_augment(cfg, size, aug_gen)  # draws from aug_gen too: its state is in every checkpoint
    best_path = out / "best.pt"
    selection: dict[str, Any] | None = None

    start_epoch, start_step, global_step = 0, 0, 0
    history: list[dict[str, float]] = []
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if state["scaler"]:  # empty when saved without fp16 scaling (CPU, bf16); a disabled scaler ignores it
            scaler.load_state_dict(state["scaler"])
        if cfg.memory_size:  # the queue, so the resumed steps mine among the same rows
            criterion.load_state_dict(state["memory"])
        set_rng_state(state["rng"]["ranks"][rank], aug_gen)
        start_epoch, start_step, global_step = state["epoch"], state["step_in_epoch"], state["step"]
        history = list(state.get("history", []))
        selection = state.get("selection")
        log(f"resumed from {ckpt_path} at epoch {start_epoch}, step {start_step}")
        del state
    from .runlog import RunLog

    runlog = RunLog(out, start_step=global_step, every=cfg.log_every, enabled=rank == 0)  # rows after it dropped

    train_model: nn.Module = model
    if world > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if device.type == "cuda" else None
        )

    def save(epoch: int, step_in_epoch: int, best: bool = False) -> None:
        runlog.flush()  # a resumed run continues history.csv from this step
        rng = gather_rng_states(aug_gen)  # every rank takes part; rank 0 writes
        if rank != 0:
            return
        payload = {
            "kind": "train",
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": {"world_size": world, "ranks": rng},
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "step": global_step,
            "history": history,
            "config": cfg.to_dict(),
            "num_classes": num_classes,
            "num_train_images": num_train_images,
            "image_size": list(size),
            "selection": selection,
            **({"memory": criterion.state_dict()} if cfg.memory_size else {}),
        }
        save_checkpoint(payload, ckpt_path)
        if best:
            save_checkpoint(payload, best_path)

    stopped = False
    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        first = start_step if epoch == start_epoch else 0  # a resumed epoch skips the batches already run
        batches = list(sampler)[first:]
        loader = DataLoader(dataset, batch_sampler=batches, num_workers=cfg.num_workers,
                            pin_memory=device.type == "cuda")
        sums = torch.zeros(3, device=device)  # total, id, triplet (no per-step host sync)
        done, seen, t0 = 0, 0, time.perf_counter()
        bar = _progress(cfg, rank, steps_per_epoch, first, f"epoch {epoch + 1}/{cfg.epochs}")
        for i, (images, labels, modalities, _cams) in enumerate(loader, start=first):
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(cfg, epoch, i, steps_per_epoch) * group.get("lr_mult", 1.0)
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            modalities = modalities.to(device, non_blocking=True)
            half = images.shape[0] // 2
            visible, thermal = images[:half], images[half:]
            if pipeline is not None:  # augment="reid": views (CAJ: 2 visible + thermal), each with its labels
                *views, thermal = pipeline(visible, thermal)
                visible = torch.cat(views)
                labels = torch.cat([labels[:half]] * len(views) + [labels[half:]])
                modalities = torch.cat([modalities[:half]] * len(views) + [modalities[half:]])
            elif cfg.flip:
                visible = random_flip(visible, aug_gen)
                thermal = random_flip(thermal, aug_gen)
            if pipeline is None and mag is not None:
                visible, thermal = mag(visible, thermal)
            if pipeline is None:
                visible, thermal = normalize_images(visible), normalize_images(thermal)
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=amp):
                feat, logits = train_model(visible, thermal)
                id_loss = F.cross_entropy(logits.float(), labels)
                tri_loss = criterion(feat, labels, modalities) if criterion is not None else id_loss.new_zeros(())
                loss = cfg.id_weight * id_loss + cfg.triplet_weight * tri_loss
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            global_step += 1
            done += 1
            sums += torch.stack([loss.detach(), id_loss.detach(), tri_loss.detach()]).float()
            seen += images.shape[0]
            runlog.step(global_step, epoch + 1, optimizer.param_groups[0]["lr"], loss, id_loss, tri_loss,
                        getattr(criterion, "last_parts", None))
            if bar is not None:
                bar.update(1)
                if (i + 1) % 10 == 0 or i + 1 == steps_per_epoch:
                    bar.set_postfix(loss=f"{float(loss):.3f}", img_s=f"{seen / (time.perf_counter() - t0):.0f}")
            mid_epoch = i + 1 < steps_per_epoch
            if cfg.max_steps is not None and global_step >= cfg.max_steps:
                stopped = mid_epoch or epoch + 1 < cfg.epochs
                if mid_epoch:
                    save(epoch, i + 1)
                    break
            if cfg.checkpoint_every and global_step % cfg.checkpoint_every == 0 and mid_epoch:
                save(epoch, i + 1)
        if bar is not None:
            bar.close()
        epoch_finished = first + done == steps_per_epoch
        if epoch_finished:
            row = dict(zip(("loss", "id_loss", "triplet_loss"), (sums / max(done, 1)).tolist()))
            elapsed = time.perf_counter() - t0
            row.update(epoch=epoch + 1, steps=done, seconds=elapsed, images_per_s=seen / max(elapsed, 1e-9))
            improved = False
            if cfg.eval_every and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs) and rank == 0:
                if cfg.val != "none":  # selection on validation; the test set is not read
                    row.update(evaluate_validation(model, data, val_query, val_gallery, size, device))
                    value = row[f"val_{cfg.select_metric}"]
                    improved = selection is None or value > selection["value"]
                    if improved:
                        selection = {"metric": f"val_{cfg.select_metric}", "value": value, "epoch": epoch + 1}
                else:
                    row.update(evaluate_model(model, data, size, trials=cfg.eval_trials, device=device))
                model.train()
            history.append(row)
            runlog.epoch(global_step, row)
            log(_format_row(row))
            save(epoch + 1, 0, best=improved)
        if stopped:
            break
    runlog.close()  # history.json, curves.png
    return TrainResult(model=model, data=data, config=cfg, history=history,
                       checkpoint=ckpt_path if ckpt_path.exists() else None, stopped_early=stopped,
                       best_checkpoint=best_path if selection is not None and best_path.exists() else None,
                       selection=selection)


def _progress(cfg: TrainConfig, rank: int, total: int, initial: int, desc: str) -> Any:
    if not cfg.progress or rank != 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True, disable=None)


def _format_row(row: dict[str, float]) -> str:
    parts = [f"epoch {int(row['epoch'])}", f"loss {row['loss']:.4f}", f"id {row['id_loss']:.4f}",
             f"triplet {row['triplet_loss']:.4f}", f"{row['images_per_s']:.0f} img/s"]
    for key in ("rank1", "mAP", "mINP", "val_rank1", "val_mAP", "val_mINP"):
        if key in row:
            parts.append(f"{key} {100 * row[key]:.2f}%")
    return " | ".join(parts)


# --------------------------------------------------------------------------- evaluation


def features(model: nn.Module, samples: Sequence[Sample], data: ReIDData, size: tuple[int, int],
             device: torch.device | None = None, flip: bool = False, batch_size: int = 128) -> torch.Tensor:
    """Eval-mode features of ``samples`` with the training normalisation."""
    from .evaluation import extract_features

    return extract_features(model, samples, loader=data.loader, size=size, transform=normalize_images_single,
                            device=device, flip=flip, batch_size=batch_size)


def normalize_images_single(x: torch.Tensor) -> torch.Tensor:
    """:func:`normalize_images` for one ``(3, H, W)`` image (a dataset transform)."""
    return normalize_images(x.unsqueeze(0)).squeeze(0)


def evaluate_model(model: nn.Module, data: ReIDData, size: tuple[int, int], *, trials: int = 10,
                   device: torch.device | None = None, flip: bool = False) -> dict[str, Any]:
    """The headline numbers of ``data``'s main setting: ``rank1``, ``mAP``, ``mINP``, ``cmc``
    and ``setting`` (its name).

    The protocol is ``data.protocol`` (see :func:`run_protocol`); the main setting is
    SYSU-MM01 (and synthetic data): thermal-to-visible all-search single-shot; RegDB:
    visible-to-thermal; manifest data: visible-to-thermal all-search single-shot.
    """
    result = run_protocol(model, data, size, trials=trials, device=device, flip=flip)
    main = next(iter(result.values()))
    return {"rank1": float(main.cmc[0]), "mAP": float(main.mAP), "mINP": float(main.mINP),
            "cmc": [float(v) for v in main.cmc], "setting": main.name}


def run_protocol(model: nn.Module, data: ReIDData, size: tuple[int, int], *, protocol: str | None = None,
                 trials: int = 10, device: torch.device | None = None, flip: bool = False,
                 full: bool = False, gallery_sampling: str = "default", rerank: Any = None,
                 distance: str = "euclidean") -> dict[str, Any]:
    """Run an evaluation protocol on ``data``; returns ``{setting: ProtocolResult}`` (main first).

    ``protocol`` defaults to ``data.protocol``, which each reader sets for its kind of
    dataset (never guessed from ``data.name``):

    * ``"sysu"`` (SYSU-MM01, synthetic data): thermal-to-visible, all-search single-shot;
      ``full``: all/indoor x single/multi-shot.
    * ``"regdb"`` (RegDB): visible-to-thermal and thermal-to-visible, the whole other
      modality as gallery (``full`` changes nothing).
    * ``"npu"`` (manifests): visible-to-thermal and thermal-to-visible, all-search
      single-shot; ``full``: both directions x all + each scene of
      ``data.meta["camera_scene"]`` (e.g. indoor, outdoor) x single/multi-shot.

    Directions the dataset does not have (no query or gallery of that modality) are left
    out of ``"regdb"`` / ``"npu"``; a protocol that does not fit the data at all raises
    :class:`~mag_mmt.errors.UserError`. ``gallery_sampling`` (``"agw"``: AGW's SYSU-MM01
    galleries, single-shot), ``rerank`` and ``distance`` are passed to the protocol
    functions (see ``docs/evaluation-options.md``).
    """
    from .evaluation import evaluate_cross_modality, evaluate_regdb, evaluate_sysu
    from .evaluation.protocols import DIRECTIONS

    if protocol is None:
        protocol = data.protocol
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if gallery_sampling != "default" and protocol != "sysu":
        raise UserError(f"gallery sampling {gallery_sampling!r} applies to the SYSU-MM01 protocol, not {protocol!r}")
    options = {"rerank": rerank, "distance": distance}
    qf = features(model, data.query, data, size, device, flip)
    gf = qf if data.gallery == data.query else features(model, data.gallery, data, size, device, flip)
    if protocol == "sysu":
        settings = [("all", "single"), ("all", "multi"), ("indoor", "single"), ("indoor", "multi")]
        out = {}
        for mode, shot in settings if full else settings[:1]:
            res = evaluate_sysu(qf, gf, data.query, data.gallery, mode=mode, shot=shot, trials=trials,
                                gallery_sampling=gallery_sampling, **options)
            out[res.name] = res
        return out
    query_mods = {s.modality for s in data.query}
    gallery_mods = {s.modality for s in data.gallery}
    directions = [d for d, qm in DIRECTIONS.items() if qm in query_mods and 1 - qm in gallery_mods]
    if not directions:
        raise UserError(
            f"{data.name}: protocol {protocol!r} needs query images of one modality and gallery images of "
            "the other; this dataset has none"
        )
    if protocol == "regdb":
        res = evaluate_regdb(qf, gf, data.query, data.gallery, directions=directions, **options)
        return {r.name: r for r in res.values()}
    scenes = data.meta.get("camera_scene")
    res = evaluate_cross_modality(
        qf, gf, data.query, data.gallery, directions=directions, camera_scene=scenes, trials=trials,
        searches=None if full else ["all"], shots=("single", "multi") if full else ("single",), **options,
    )
    return {r.name: r for r in res.values()}


def model_from_checkpoint(path: str, device: torch.device | None = None) -> tuple[nn.Module, TrainConfig, dict]:
    """Rebuild the model of a training checkpoint (architecture from its stored config)."""
    state = load_checkpoint(path, map_location="cpu", kind="train")
    cfg = TrainConfig.from_dict(state["config"])
    cfg.pretrained = None
    model = build_model_for(cfg, int(state["num_classes"]))
    model.load_state_dict(state["model"])
    if device is not None:
        model = model.to(device)
    return model, cfg, state


def write_json(path: str | os.PathLike[str], payload: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
