"""Named training recipes: ``mag-mmt train --recipe agw|caj|paper``.

A recipe sets every :class:`~mag_mmt.training.TrainConfig` field that shapes training to one
source's values, each with the place it comes from: a file and line of
``mangye16/Cross-Modal-Re-ID-baseline`` (AGW at the repository root, CAJ in ``ICCV21_CAJ/``),
a section of the MAG/MMT paper, or ``ours`` where the source gives no value. Any field given
explicitly (a command-line flag, or ``overrides``) replaces the recipe's value for that field
only. ``docs/recipes.md`` holds :func:`recipe_table` (a test keeps the two equal).

Two departures are deliberate and marked in the table: the ``val`` / ``select_metric`` fields
(AGW and CAJ keep the epoch that scores best *on the test set*; a recipe here selects on a
validation split), and the data set (AGW's ``--dataset`` is ours to choose).

Example:
    >>> from mag_mmt.recipes import resolve_recipe
    >>> cfg = resolve_recipe("agw", {"epochs": 3})
    >>> cfg.model, cfg.lr, cfg.backbone_lr_mult, cfg.milestones, cfg.epochs
    ('dual-resnet50', 0.1, 0.1, (20, 50), 3)
"""

from __future__ import annotations

from typing import Any, Mapping

from .errors import UserError

_AGW = "AGW "
_CAJ = "CAJ ICCV21_CAJ/"
_PAPER = "paper, Experiments: Experimental settings"

#: ``{recipe: {field: (value, source)}}``; a source starting with ``ours`` is our choice.
RECIPES: dict[str, dict[str, tuple[Any, str]]] = {
    "agw": {
        "model": ("dual-resnet50", _AGW + "train.py:177 (embed_net, non-local and GeM on for --method agw)"),
        "share_point": ("stem", _AGW + "model.py:93-107 (visible_module: conv1, bn1, relu, maxpool)"),
        "non_local": (True, _AGW + "model.py:155 (non_layers [0, 2, 3, 0])"),
        "img_size": ((288, 144), _AGW + "train.py:40-43 (--img_w 144, --img_h 288)"),
        "augment": ("reid", _AGW + "train.py:114-121 (Pad, RandomCrop, flip, ToTensor, Normalize)"),
        "pad": (10, _AGW + "train.py:116 (Pad(10))"),
        "flip": (True, _AGW + "train.py:118 (RandomHorizontalFlip())"),
        "erase_p": (0.0, _AGW + "train.py:114-121 (no erasing)"),
        "channel_exchange": (False, _AGW + "train.py:114-121 (no channel exchange)"),
        "adaptive_gray_p": (0.0, _AGW + "train.py:114-121 (no grayscale)"),
        "jitter": (None, _AGW + "train.py:114-121 (no colour jitter)"),
        "visible_views": (1, _AGW + "train.py:251 (one visible, one thermal image per pair)"),
        "mag": (False, _AGW + "train.py:114-121 (no MAG)"),
        "mag_p": (0.5, "ours: unused (mag off)"),
        "mag_scale": ((0.02, 0.4), "ours: unused (mag off)"),
        "mag_ratio": ((0.3, 3.3), "ours: unused (mag off)"),
        "margin": (0.3, "ours: unused (WRT has no margin, AGW loss.py:78-111)"),
        "pos_margin": (0.1, "ours: unused (MMT only)"),
        "pos_weight": (1.0, "ours: unused (MMT only)"),
        "mman_weight": (1.0, "ours: unused (MMT only)"),
        "num_identities": (8, _AGW + "train.py:44 (--batch-size 8 identities)"),
        "num_instances": (4, _AGW + "train.py:52 (--num_pos 4)"),
        "epoch_unit": ("images", _AGW + "utils.py:73-74 (N = max(#visible, #thermal) per epoch)"),
        "optimizer": ("sgd", _AGW + "train.py:24, 211"),
        "lr": (0.1, _AGW + "train.py:23, 213-214 (bottleneck and classifier)"),
        "backbone_lr_mult": (0.1, _AGW + "train.py:212 (0.1 * lr for the rest)"),
        "momentum": (0.9, _AGW + "train.py:215"),
        "weight_decay": (5e-4, _AGW + "train.py:215"),
        "warmup_epochs": (10, _AGW + "train.py:220-221"),
        "warmup_mode": ("staircase", _AGW + "train.py:221 (lr * (epoch + 1) / 10, per epoch)"),
        "milestones": ((20, 50), _AGW + "train.py:222-227 (x0.1 from epoch 20, x0.01 from 50)"),
        "epochs": (81, _AGW + "train.py:362 (epochs 0..80)"),
        "loss": ("wrt", _AGW + "train.py:195-196 (TripletLoss_WRT)"),
        "id_weight": (1.0, _AGW + "train.py:270 (loss_id + loss_tri)"),
        "triplet_weight": (1.0, _AGW + "train.py:270"),
        "test_feature": ("bn", _AGW + "train.py:390 (best epoch by cmc_att, the BNNeck feature)"),
        "eval_every": (2, _AGW + "train.py:384 (every 2nd epoch)"),
        "val": ("auto", "ours: AGW selects on the test set (train.py:384-390)"),
        "select_metric": ("rank1", _AGW + "train.py:390 (rank-1)"),
    },
    "caj": {
        "model": ("dual-resnet50", _CAJ + "train_ext.py:207 (embed_net, non-local and GeM on)"),
        "share_point": ("stem", _CAJ + "model.py:93-107 (as AGW's)"),
        "non_local": (True, _CAJ + "train_ext.py:207 (no_local='on')"),
        "img_size": ((288, 144), _CAJ + "data_loader.py:70, 80, 90 (RandomCrop((288, 144)))"),
        "augment": ("reid", _CAJ + "data_loader.py:66-95 (transform_thermal, _color, _color1)"),
        "pad": (10, _CAJ + "data_loader.py:69, 79, 89 (Pad(10))"),
        "flip": (True, _CAJ + "data_loader.py:71, 81, 91"),
        "erase_p": (0.5, _CAJ + "data_loader.py:74, 85, 94 (ChannelRandomErasing(0.5), every view)"),
        "channel_exchange": (True, _CAJ + "data_loader.py:95 (ChannelExchange(gray=2), 2nd visible view)"),
        "adaptive_gray_p": (0.5, _CAJ + "data_loader.py:75 (ChannelAdapGray(0.5), thermal)"),
        "jitter": (None, _CAJ + "data_loader.py:66-95 (no colour jitter)"),
        "visible_views": (2, _CAJ + "data_loader.py:102-106, train_ext.py:288-298 (two visible views)"),
        "mag": (False, _CAJ + "data_loader.py:66-95 (no MAG)"),
        "mag_p": (0.5, "ours: unused (mag off)"),
        "mag_scale": ((0.02, 0.4), "ours: unused (mag off)"),
        "mag_ratio": ((0.3, 3.3), "ours: unused (mag off)"),
        "margin": (0.3, "ours: unused (ADP has no margin, CAJ loss.py:108-161)"),
        "pos_margin": (0.1, "ours: unused (MMT only)"),
        "pos_weight": (1.0, "ours: unused (MMT only)"),
        "mman_weight": (1.0, "ours: unused (MMT only)"),
        "num_identities": (8, _CAJ + "train_ext.py:47 (--batch-size 8 identities)"),
        "num_instances": (4, _CAJ + "train_ext.py:55 (--num_pos 4)"),
        "epoch_unit": ("images", _CAJ + "train_ext.py:421 (AGW's IdentitySampler)"),
        "optimizer": ("sgd", _CAJ + "train_ext.py:27, 245"),
        "lr": (0.1, _CAJ + "train_ext.py:26, 247-248 (bottleneck and classifier)"),
        "backbone_lr_mult": (0.1, _CAJ + "train_ext.py:246"),
        "momentum": (0.9, _CAJ + "train_ext.py:249"),
        "weight_decay": (5e-4, _CAJ + "train_ext.py:249"),
        "warmup_epochs": (10, _CAJ + "train_ext.py:254-255"),
        "warmup_mode": ("staircase", _CAJ + "train_ext.py:255"),
        "milestones": ((20, 50), _CAJ + "train_ext.py:256-261"),
        "epochs": (100, _CAJ + "train_ext.py:417 (epochs 0..99)"),
        "loss": ("adp", _CAJ + "train_ext.py:229-230, main.sh:10-15 (--method adp, alpha 1, gamma 1, square 1)"),
        "id_weight": (1.0, _CAJ + "train_ext.py:323 (loss_id + loss_tri; --kl 0, line 69)"),
        "triplet_weight": (1.0, _CAJ + "train_ext.py:323"),
        "test_feature": ("bn", _CAJ + "train_ext.py:445 (best epoch by cmc_att, the BNNeck feature)"),
        "eval_every": (2, _CAJ + "train_ext.py:439 (every 2nd epoch)"),
        "val": ("auto", "ours: CAJ selects on the test set (train_ext.py:439-445)"),
        "select_metric": ("rank1", _CAJ + "train_ext.py:445 (rank-1)"),
    },
    "paper": {
        "model": ("dual-swin", _PAPER + " (dual-path Swin Transformer)"),
        "share_point": ("F3", "paper, ablation of the share point (F3 best)"),
        "non_local": (True, "ours: unused by dual-swin"),
        "img_size": ((224, 224), "paper, Method (images resized to 224x224)"),
        "augment": ("reid", "ours: AGW's pad/crop/flip around MAG"),
        "pad": (10, "ours: AGW's Pad(10)"),
        "flip": (True, "ours: AGW's flip"),
        "erase_p": (0.0, "ours: none"),
        "channel_exchange": (False, "ours: none"),
        "adaptive_gray_p": (0.0, "ours: none"),
        "jitter": (None, "ours: none"),
        "visible_views": (1, "paper, Method (one visible and one infrared image per pair)"),
        "mag": (True, "paper, Method (MAG)"),
        "mag_p": (0.5, "ours: the paper names p without a value (docs/method.md)"),
        "mag_scale": ((0.02, 0.4), "ours: the paper names [A_l, A_h] without values"),
        "mag_ratio": ((0.3, 3.3), "ours: the paper names [r_l, r_h] without values"),
        "margin": (0.3, "ours: the paper's m1 has no value (AGW/CAJ's usual margin)"),
        "pos_margin": (0.1, "ours: the paper's m2 has no value"),
        "pos_weight": (1.0, "ours: the paper's lambda has no value"),
        "mman_weight": (1.0, "ours: the paper gives no term weights"),
        "num_identities": (8, _PAPER + " ('a batch size of 8'; our reading: 8 identities)"),
        "num_instances": (4, "ours: AGW's K"),
        "epoch_unit": ("images", "ours: AGW's epoch"),
        "optimizer": ("sgd", _PAPER),
        "lr": (0.01, _PAPER),
        "backbone_lr_mult": (1.0, "ours: one learning rate"),
        "momentum": (0.9, _PAPER),
        "weight_decay": (5e-4, _PAPER),
        "warmup_epochs": (10, "ours: AGW's warm-up"),
        "warmup_mode": ("staircase", "ours: AGW's warm-up"),
        "milestones": ((20, 50), "ours: AGW's steps"),
        "epochs": (81, "ours: AGW's length"),
        "loss": ("mmt", "paper, Method (identity loss + multi-masking triplet loss)"),
        "id_weight": (1.0, "ours"),
        "triplet_weight": (1.0, "ours"),
        "test_feature": ("bn", "ours: AGW's selection feature"),
        "eval_every": (2, "ours: AGW's interval"),
        "val": ("auto", "ours"),
        "select_metric": ("rank1", "ours: AGW's metric"),
    },
}


def recipe_values(name: str) -> dict[str, Any]:
    """``{field: value}`` of recipe ``name`` (:class:`UserError` for an unknown name)."""
    if name not in RECIPES:
        raise UserError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return {k: v for k, (v, _src) in RECIPES[name].items()}


def resolve_recipe(name: str | None, overrides: Mapping[str, Any] | None = None) -> Any:
    """A :class:`~mag_mmt.training.TrainConfig`: the defaults, then recipe ``name`` (None: none),
    then ``overrides`` (field by field; unknown fields are a :class:`UserError`)."""
    import dataclasses

    from .training import TrainConfig

    known = {f.name for f in dataclasses.fields(TrainConfig)}
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UserError(f"unknown TrainConfig fields {unknown}")
    values = recipe_values(name) if name is not None else {}
    return TrainConfig.from_dict({**values, **overrides, "recipe": name})


def _cell(value: Any) -> str:
    if isinstance(value, tuple):
        return ", ".join(map(str, value))
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def recipe_table() -> str:
    """The Markdown table of every recipe's values and sources (docs/recipes.md holds it)."""
    names = list(RECIPES)
    fields = list(RECIPES[names[0]])
    lines = ["| field | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for f in fields:
        cells = [f"`{_cell(RECIPES[n][f][0])}` ({RECIPES[n][f][1]})" for n in names]
        lines.append(f"| `{f}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


__all__ = ["RECIPES", "recipe_values", "resolve_recipe", "recipe_table"]
