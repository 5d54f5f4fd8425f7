"""The paper's dual-path Swin Transformer (section 4.1, appendix A.3), built on torchvision.

torchvision's ``swin_t`` is cut into the five units of the paper (stem + 4 stages); as in the
Swin paper, each stage after the first begins with its patch-merging layer:

=========  =================================================  ==============  ======
unit       torchvision ``SwinTransformer`` modules            output (NHWC)   stride
=========  =================================================  ==============  ======
stem       ``features[0]`` (4x4 patch conv, permute, LN)      (B, H/4, W/4, C)   4
stage 1    ``features[1]`` (Swin blocks)                      (B, H/4, W/4, C)   4
stage 2    ``features[2]`` (patch merging), ``features[3]``   (.., 2C)           8
stage 3    ``features[4]``, ``features[5]``                   (.., 4C)          16
stage 4    ``features[6]``, ``features[7]``, ``norm``, permute (B, 8C, h, w)    32
=========  =================================================  ==============  ======

Units before the share point are modality-specific copies, the others shared (see
:mod:`mag_mmt.models.heads` for the F1..F5 table; F3, the paper's best, is the default).
Pooling is an average over tokens (GeM power 1, as torchvision's Swin), then BNNeck and
classifier. Nothing is ever downloaded: ``pretrained_path`` names a local Swin-T ImageNet
file in any of the layouts users hold (see :mod:`mag_mmt.models.weights`): torchvision's
``swin_t`` state dict (e.g. the file ``Swin_T_Weights.IMAGENET1K_V1`` downloads to), timm's
``swin_tiny_patch4_window7_224`` (``.pth``/``.bin``/``.safetensors``) or the official Swin
release (``{"model": ...}``). It is loaded into every copy (the modality-specific units
twice, the shared ones once) and ``model.pretrained_report`` says what was loaded; a key
that does not fit stops the load with an error listing it. Without it the weights are
random.
"""

from __future__ import annotations

import logging
import os
from typing import Mapping, Sequence

import torch
from torch import nn
from torchvision.models.swin_transformer import SwinTransformer
from torchvision.ops.misc import Permute

from mag_mmt.errors import UserError

from .heads import DualPathNet
from .weights import (
    SWIN_LAYOUTS,
    SwinLoadReport,
    convert_swin_state_dict,
    load_swin_state_dict,
    swin_key_in_layout,
)

__all__ = [
    "SWIN_T_CONFIG",
    "SWIN_TINY_TEST_CONFIG",
    "DualPathSwin",
    "load_swin_state_dict",
    "split_swin_state_dict",
]

_log = logging.getLogger(__name__)
_UNIT_NAMES = ("stem", "stage1", "stage2", "stage3", "stage4")

# torchvision ``swin_t`` configuration (also the defaults of :class:`DualPathSwin`)
SWIN_T_CONFIG = dict(
    patch_size=(4, 4),
    embed_dim=96,
    depths=(2, 2, 6, 2),
    num_heads=(3, 6, 12, 24),
    window_size=(7, 7),
)
# A tiny configuration for CPU tests (about 0.1 M parameters per path).
SWIN_TINY_TEST_CONFIG = dict(
    patch_size=(4, 4),
    embed_dim=16,
    depths=(1, 1, 1, 1),
    num_heads=(1, 2, 2, 4),
    window_size=(2, 2),
)

# unit index -> torchvision top-level prefixes, in the order they are applied
_UNIT_PREFIXES: tuple[tuple[str, ...], ...] = (
    ("features.0",),
    ("features.1",),
    ("features.2", "features.3"),
    ("features.4", "features.5"),
    ("features.6", "features.7", "norm"),
)


def _swin_units(backbone: SwinTransformer) -> list[nn.Module]:
    f = backbone.features
    return [
        f[0],
        f[1],
        nn.Sequential(f[2], f[3]),
        nn.Sequential(f[4], f[5]),
        nn.Sequential(f[6], f[7], backbone.norm, Permute([0, 3, 1, 2])),
    ]


def split_swin_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    template: Sequence[nn.Module],
    source: str = "state_dict",
    origin: Mapping[str, str] | None = None,
    layout: str = "torchvision",
) -> list[dict[str, torch.Tensor]]:
    """Cut a torchvision-named ``swin_t`` ``state_dict`` into one state dict per unit.

    ``template`` holds the five units (one path) to check names and shapes against; the
    classifier ``head.*`` is ignored. ``relative_position_index`` buffers are derived from the
    window size: the model's own are used, and one present in the checkpoint must equal it
    (any shape, e.g. the official ``(N, N)`` form). ``origin`` maps torchvision names back to
    the file's names for the error message. Raises :class:`~mag_mmt.errors.UserError`
    listing missing, unexpected or mis-shaped entries: never a partial load.
    """
    origin = origin or {}
    per_unit: list[dict[str, torch.Tensor]] = [{} for _ in _UNIT_PREFIXES]
    unexpected = []
    for key, value in state_dict.items():
        if key.startswith("head."):
            continue
        for u, prefixes in enumerate(_UNIT_PREFIXES):
            match = next((i for i, p in enumerate(prefixes) if key.startswith(p + ".")), None)
            if match is not None:
                rest = key[len(prefixes[match]) + 1 :]
                per_unit[u][rest if len(prefixes) == 1 else f"{match}.{rest}"] = value
                break
        else:
            unexpected.append(origin.get(key, key))
    missing, mismatched = [], []
    for u, unit in enumerate(template):
        expected = unit.state_dict()
        name_of = {k: origin.get(_tv_name(u, k), _tv_name(u, k)) for k in per_unit[u]}
        for name, tensor in expected.items():
            if name.endswith("relative_position_index"):
                given = per_unit[u].get(name)
                if given is not None and not (
                    given.numel() == tensor.numel() and torch.equal(given.reshape(-1).long(), tensor.reshape(-1).long())
                ):
                    mismatched.append(f"{name_of[name]}: differs from the model's (another window size?)")
                per_unit[u][name] = tensor
            elif name not in per_unit[u]:
                missing.append(swin_key_in_layout(_tv_name(u, name), layout))
            elif per_unit[u][name].shape != tensor.shape:
                mismatched.append(
                    f"{name_of[name]}: checkpoint {tuple(per_unit[u][name].shape)} vs model {tuple(tensor.shape)}"
                )
        unexpected += [name_of[k] for k in per_unit[u] if k not in expected]
    if missing or unexpected or mismatched:
        parts = []
        for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if items:
                shown = ", ".join(items[:5]) + (f", ... ({len(items)} in all)" if len(items) > 5 else "")
                parts.append(f"{title}: {shown}")
        raise UserError(
            f"{source} (read as {SWIN_LAYOUTS[layout]}) does not match the Swin configuration of this "
            "model; nothing was loaded; " + "; ".join(parts)
        )
    return per_unit


def _tv_name(unit: int, name: str) -> str:
    """torchvision name of ``name`` inside unit ``unit``."""
    prefixes = _UNIT_PREFIXES[unit]
    if len(prefixes) == 1:
        return f"{prefixes[0]}.{name}"
    index, rest = name.split(".", 1)
    return f"{prefixes[int(index)]}.{rest}"


class DualPathSwin(DualPathNet):
    """Dual-path Swin Transformer with the AGW forward contract.

    Args:
        num_classes: identity classes.
        share_point: ``"F1"``..``"F5"`` or the number of specific units (default ``"F3"``).
        pretrained_path: local Swin-T ImageNet checkpoint (torchvision, timm or official
            layout, detected from its keys), loaded into both paths; ``None`` = random
            initialisation. Never downloads. The summary is in ``pretrained_report``
            (a :class:`~mag_mmt.models.weights.SwinLoadReport`) and logged at INFO level.
        pretrained_layout: ``"auto"`` (default), ``"torchvision"``, ``"timm"`` or ``"official"``.
        img_size: inputs are resized (bilinear) to this size if they differ (the paper resizes
            to 224 x 224, the default); ``None`` keeps the input size (any size works,
            torchvision pads to whole windows).
        patch_size, embed_dim, depths, num_heads, window_size: the Swin configuration
            (defaults: ``swin_t``); see ``SWIN_TINY_TEST_CONFIG`` for a CPU-test size.
        stochastic_depth_prob: torchvision's drop-path rate (``swin_t``: 0.2).
        eval_feature: ``"bn"`` or ``"pool"``, see :class:`~mag_mmt.models.heads.DualPathNet`.

    Shapes: ``forward(x1 (B1, 3, H, W), x2 (B2, 3, H, W))`` -> training
    ``(feat (B1+B2, 8*embed_dim), logits (B1+B2, num_classes))``, eval ``(B1+B2, 8*embed_dim)``.

    Example::

        >>> from mag_mmt.models.dual_swin import DualPathSwin, SWIN_TINY_TEST_CONFIG
        >>> m = DualPathSwin(10, img_size=(64, 32), **SWIN_TINY_TEST_CONFIG)
        >>> feat, logits = m(torch.randn(2, 3, 64, 32), torch.randn(2, 3, 64, 32))
        >>> feat.shape, logits.shape
        (torch.Size([4, 128]), torch.Size([4, 10]))
    """

    def __init__(
        self,
        num_classes: int,
        share_point: str | int = "F3",
        pretrained_path: str | os.PathLike | None = None,
        img_size: int | tuple[int, int] | None = 224,
        *,
        patch_size: Sequence[int] = SWIN_T_CONFIG["patch_size"],
        embed_dim: int = SWIN_T_CONFIG["embed_dim"],
        depths: Sequence[int] = SWIN_T_CONFIG["depths"],
        num_heads: Sequence[int] = SWIN_T_CONFIG["num_heads"],
        window_size: Sequence[int] = SWIN_T_CONFIG["window_size"],
        stochastic_depth_prob: float = 0.2,
        eval_feature: str = "bn",
        pretrained_layout: str = "auto",
    ) -> None:
        if len(depths) != 4 or len(num_heads) != 4:
            raise ValueError(
                f"depths and num_heads must have 4 entries (4 stages), got {list(depths)} and {list(num_heads)}"
            )
        config = dict(
            patch_size=list(patch_size),
            embed_dim=int(embed_dim),
            depths=list(depths),
            num_heads=list(num_heads),
            window_size=list(window_size),
        )
        # with the defaults this is exactly torchvision's ``swin_t(weights=None)``
        backbone = SwinTransformer(**config, stochastic_depth_prob=stochastic_depth_prob)
        if isinstance(img_size, int):
            img_size = (img_size, img_size)
        super().__init__(
            _swin_units(backbone),
            num_classes=num_classes,
            feature_dim=8 * int(embed_dim),
            share_point=share_point,
            pool_p=1.0,
            eval_feature=eval_feature,
            input_size=img_size,
        )
        self.config = config
        self.pretrained_report: SwinLoadReport | None = None
        if pretrained_path is not None:
            source = repr(os.fspath(pretrained_path))
            self.load_swin_weights(load_swin_state_dict(pretrained_path), layout=pretrained_layout, source=source)

    def load_swin_weights(
        self, state_dict: Mapping[str, torch.Tensor], layout: str = "auto", source: str = "state_dict"
    ) -> SwinLoadReport:
        """Load a Swin-T ``state_dict`` of any supported layout into both paths (BNNeck head kept).

        All or nothing: every backbone tensor of the model must come from ``state_dict`` and
        every key of ``state_dict`` must be used (``head.*`` aside), otherwise
        :class:`~mag_mmt.errors.UserError` lists the keys and the model is unchanged.
        Returns (and stores in ``pretrained_report``, and logs) the summary.
        """
        converted = convert_swin_state_dict(state_dict, layout, source)
        per_unit = split_swin_state_dict(
            converted.state_dict, self.path(0), source=source, origin=converted.origin, layout=converted.layout
        )
        for modality in (0, 1):
            for unit, sd in zip(self.path(modality), per_unit):
                unit.load_state_dict(sd)
        derived = [sum(k.endswith("relative_position_index") for k in sd) for sd in per_unit]
        counts = [len(sd) - d for sd, d in zip(per_unit, derived)]
        k = self.num_specific
        report = SwinLoadReport(
            source=source,
            layout=converted.layout,
            loaded=sum(counts),
            copies=2 * sum(counts[:k]) + sum(counts[k:]),
            specific_units=_UNIT_NAMES[:k],
            shared_units=_UNIT_NAMES[k:],
            ignored=converted.ignored,
            checked=sum(k_.endswith("relative_position_index") for k_ in converted.state_dict),
            recomputed=len(converted.recomputed),
        )
        self.pretrained_report = report
        _log.info("%s", report)
        return report

    def load_torchvision_state_dict(
        self, state_dict: Mapping[str, torch.Tensor], source: str = "state_dict"
    ) -> SwinLoadReport:
        """Load a torchvision ``swin_t``-format ``state_dict`` into both paths (head kept)."""
        return self.load_swin_weights(state_dict, layout="torchvision", source=source)
