"""The configuration of a training run: :class:`TrainConfig`, its allowed values and checks.

A run depends only on its :class:`TrainConfig` (and the data): the command line fills one from
its flags (``mag-mmt train``), :mod:`mag_mmt.recipes` from a named recipe. Defaults are the
paper's where it gives them (SGD, momentum 0.9, weight decay 5e-4, lr 0.01), ours elsewhere.

>>> from mag_mmt.training import TrainConfig
>>> cfg = TrainConfig(data="synthetic", model="small-cnn", epochs=2)
>>> cfg.validate()
>>> config_differences(cfg, TrainConfig(epochs=5, lr=0.1))
['lr: 0.01 -> 0.1']
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.records import DATASET_PROTOCOLS
from ..data.sampler import EPOCH_UNITS
from ..functional.exchange import DEFAULT_RATIO, DEFAULT_SCALE
from ..errors import UserError
from ..schedule import WARMUP_MODES

__all__ = [
    "DATASETS", "LOSSES", "PROTOCOLS", "RESUME_MAY_CHANGE", "AUGMENTS", "VAL_SPLITS", "SELECT_METRICS",
    "TrainConfig", "check_data_source", "share_point_value", "config_differences",
]

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
    mag_scale: tuple[float, float] = DEFAULT_SCALE
    mag_ratio: tuple[float, float] = DEFAULT_RATIO
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
        from ..models import MODELS

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
        from ..models.heads import parse_share_point

        choices = {"augment": AUGMENTS, "val": VAL_SPLITS, "select_metric": SELECT_METRICS,
                   "warmup_mode": WARMUP_MODES, "test_feature": (None, "bn", "pool")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UserError(f"{name} must be one of {', '.join(map(str, allowed))}, got {getattr(self, name)!r}")
        if self.recipe is not None:
            from ..recipes import RECIPES

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


def share_point_value(share_point: str | int) -> str | int:
    """``"stem"`` -> 1 (the stem only is modality-specific, AGW's split), ``"2"`` -> 2; others as given.

    >>> share_point_value("stem"), share_point_value("1"), share_point_value("F3")
    (1, 1, 'F3')
    """
    text = str(share_point).strip().lower()
    if text == "stem":
        return 1
    return int(text) if text.isdigit() else share_point


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
