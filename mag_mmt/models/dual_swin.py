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
classifier. Nothing is ever downloaded: ``pretrained_path`` names a local file holding a
``swin_t`` ``state_dict`` in torchvision's format (e.g. the file torchvision's
``Swin_T_Weights.IMAGENET1K_V1`` downloads to), loaded into every copy; without it the
weights are random.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import torch
from torch import nn
from torchvision.models.swin_transformer import SwinTransformer
from torchvision.ops.misc import Permute

from .heads import DualPathNet

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


def load_swin_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a torchvision-format Swin checkpoint (a ``state_dict``) from a local file.

    Also accepts a dict wrapping it under ``"state_dict"`` or ``"model"`` and a
    ``"module."`` prefix (DataParallel). Raises ``FileNotFoundError`` for a missing file and
    ``ValueError`` for a file that is not a readable state dict.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Swin weights file not found: {path!r} (nothing is downloaded)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated / not a torch file
        raise ValueError(f"could not read Swin weights from {path!r}: {exc}") from exc
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path!r} does not hold a state_dict (a mapping of names to tensors)")
    return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in obj.items()}


def split_swin_state_dict(
    state_dict: Mapping[str, torch.Tensor], template: Sequence[nn.Module], source: str = "state_dict"
) -> list[dict[str, torch.Tensor]]:
    """Cut a torchvision ``swin_t`` ``state_dict`` into one state dict per unit.

    ``template`` holds the five units (one path) to check names and shapes against; the
    classifier ``head.*`` is ignored. Raises ``ValueError`` listing missing, unexpected or
    mis-shaped entries.
    """
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
            unexpected.append(key)
    missing, mismatched = [], []
    for u, unit in enumerate(template):
        expected = unit.state_dict()
        for name, tensor in expected.items():
            if name not in per_unit[u]:
                missing.append(name)
            elif per_unit[u][name].shape != tensor.shape:
                mismatched.append(
                    f"{name}: checkpoint {tuple(per_unit[u][name].shape)} vs model {tuple(tensor.shape)}"
                )
        unexpected += [f"unit{u}.{k}" for k in per_unit[u] if k not in expected]
    if missing or unexpected or mismatched:
        parts = []
        for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if items:
                shown = ", ".join(items[:5]) + (f", ... ({len(items)} in all)" if len(items) > 5 else "")
                parts.append(f"{title}: {shown}")
        raise ValueError(
            f"{source} does not match the Swin configuration of this model "
            f"(expected a torchvision swin_t-format state_dict); " + "; ".join(parts)
        )
    return per_unit


class DualPathSwin(DualPathNet):
    """Dual-path Swin Transformer with the AGW forward contract.

    Args:
        num_classes: identity classes.
        share_point: ``"F1"``..``"F5"`` or the number of specific units (default ``"F3"``).
        pretrained_path: local torchvision-format ``swin_t`` state dict, loaded into both
            paths; ``None`` = random initialisation. Never downloads.
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
        if pretrained_path is not None:
            self.load_torchvision_state_dict(
                load_swin_state_dict(pretrained_path), source=repr(os.fspath(pretrained_path))
            )

    def load_torchvision_state_dict(
        self, state_dict: Mapping[str, torch.Tensor], source: str = "state_dict"
    ) -> None:
        """Load a torchvision ``swin_t``-format ``state_dict`` into both paths (head kept)."""
        per_unit = split_swin_state_dict(state_dict, self.path(0), source=source)
        for modality in (0, 1):
            for unit, sd in zip(self.path(modality), per_unit):
                unit.load_state_dict(sd)
