"""Read Swin-T ImageNet checkpoints in the formats users hold and rename them to torchvision's.

Three layouts of the same Swin-T weights are in circulation; all are read from a local file
(nothing is downloaded) with ``torch.load(weights_only=True)`` or, for ``*.safetensors``,
``safetensors.torch.load_file`` (both refuse pickled code):

==============  ===========================================  ================================
layout          where the file comes from                    patch merging of stage ``s``
==============  ===========================================  ================================
``torchvision`` ``torchvision.models.swin_t`` state dict     ``features.{2s}`` (own module)
``timm``        timm >= 0.9 ``swin_tiny_patch4_window7_224``  ``layers.{s}.downsample`` (opens
                (``.pth``, ``pytorch_model.bin`` or            stage ``s``, ``s`` = 1..3)
                ``model.safetensors``)
``official``    the official Swin release                    ``layers.{s-1}.downsample``
                (``{"model": state_dict}``), timm < 0.9      (closes the previous stage)
==============  ===========================================  ================================

Renaming to torchvision (``S`` a stage 0..3, ``b`` a block)::

    patch_embed.proj.*              -> features.0.0.*        (4x4 patch convolution)
    patch_embed.norm.*              -> features.0.2.*
    layers.S.blocks.b.mlp.fc1.*     -> features.{2S+1}.b.mlp.0.*
    layers.S.blocks.b.mlp.fc2.*     -> features.{2S+1}.b.mlp.3.*
    layers.S.blocks.b.<other>       -> features.{2S+1}.b.<other>  (norm1, norm2, attn.qkv,
                                       attn.proj, attn.relative_position_bias_table)
    timm:     layers.S.downsample.* -> features.{2S}.*
    official: layers.S.downsample.* -> features.{2S+2}.*
    norm.*                          -> norm.*

The patch-merging concatenation order, the relative position table and the qkv layout agree
across the three, so the renaming is all there is. ``head.*`` (the ImageNet classifier) is
ignored on purpose and reported. ``relative_position_index`` (a buffer the official and
torchvision files carry) is checked against the model's own, not loaded; ``attn_mask`` (the
official file's shifted-window masks, resolution-dependent) is recomputed by the model.
A key no rule recognises is kept under its own name, so the loader lists it as unexpected.

Example::

    >>> sd = {"layers.1.downsample.reduction.weight": torch.zeros(4, 8), "head.fc.weight": torch.zeros(2, 4)}
    >>> converted = convert_swin_state_dict(sd)
    >>> converted.layout, list(converted.state_dict), converted.ignored
    ('timm', ['features.2.reduction.weight'], ('head.fc.weight',))
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Mapping

import torch

from mag_mmt.errors import MissingFileError, UserError

__all__ = [
    "SWIN_LAYOUTS",
    "ConvertedSwin",
    "SwinLoadReport",
    "read_state_dict_file",
    "load_swin_state_dict",
    "detect_swin_layout",
    "convert_swin_state_dict",
    "swin_key_in_layout",
]

#: layout name -> how reports describe it
SWIN_LAYOUTS = {
    "torchvision": "torchvision swin_t",
    "timm": "timm >= 0.9 (patch merging opens a stage)",
    "official": "official Swin release / timm < 0.9 (patch merging closes a stage)",
}

_BLOCK = re.compile(r"layers\.(\d+)\.blocks\.(\d+)\.(.+)")
_DOWNSAMPLE = re.compile(r"layers\.(\d+)\.downsample\.(.+)")
# block sub-keys: file name -> torchvision name (prefix match, the rest is kept)
_BLOCK_RENAMES = (
    ("mlp.fc1.", "mlp.0."),
    ("mlp.fc2.", "mlp.3."),
    ("norm1.", "norm1."),
    ("norm2.", "norm2."),
    ("attn.qkv.", "attn.qkv."),
    ("attn.proj.", "attn.proj."),
)
_BLOCK_EXACT = ("attn.relative_position_bias_table", "attn.relative_position_index")
_STEM_RENAMES = (("patch_embed.proj.", "features.0.0."), ("patch_embed.norm.", "features.0.2."), ("norm.", "norm."))


def read_state_dict_file(path: str | os.PathLike, what: str = "model") -> dict[str, torch.Tensor]:
    """Read a ``state_dict`` from a local file (nothing is downloaded), names unchanged.

    ``torch.load(weights_only=True)``, or ``safetensors`` for ``*.safetensors`` (installed with
    timm). Unwraps ``{"state_dict": ...}`` and ``{"model": ...}`` (the official releases) and
    strips a ``"module."`` prefix (DataParallel). A missing file is a
    :class:`~mag_mmt.errors.MissingFileError`; an unreadable one, or one that is not a mapping of
    names to tensors, a :class:`~mag_mmt.errors.UserError` naming the file and ``what``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingFileError(f"{what} weights file not found: {path!r} (nothing is downloaded)")
    if path.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise UserError(f"reading {path!r} needs the safetensors package (pip install safetensors)") from None
        reader = load_file
    else:
        def reader(p: str) -> object:
            return torch.load(p, map_location="cpu", weights_only=True)
    try:
        obj = reader(path)
    except Exception as exc:  # truncated, not a torch / safetensors file, pickled objects
        raise UserError(f"could not read {what} weights from {path!r}: {exc}") from exc
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path!r} does not hold a state_dict (a mapping of names to tensors)")
    return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in obj.items()}


def load_swin_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a Swin checkpoint (any of the layouts above): :func:`read_state_dict_file`."""
    return read_state_dict_file(path, "Swin")


def detect_swin_layout(state_dict: Mapping[str, torch.Tensor], source: str = "state_dict") -> str:
    """``"torchvision"``, ``"timm"`` or ``"official"``, from the key names (see the module table).

    A file with ``layers.0.downsample.*`` merges patches at the end of a stage (official,
    timm < 0.9); one with ``layers.S.blocks`` but no stage-0 downsample is timm >= 0.9.
    Raises :class:`~mag_mmt.errors.UserError` when neither naming is present.
    """
    keys = list(state_dict)
    if any(k.startswith("features.") for k in keys):
        return "torchvision"
    if any(k.startswith(("layers.", "patch_embed.")) for k in keys):
        return "official" if any(k.startswith("layers.0.downsample.") for k in keys) else "timm"
    shown = ", ".join(keys[:5]) + (", ..." if len(keys) > 5 else "")
    raise UserError(
        f"{source}: not a Swin checkpoint in a known layout (torchvision 'features.*', timm or the official "
        f"release 'patch_embed.*'/'layers.*'); its first keys: {shown or '(none)'}"
    )


@dataclass(frozen=True)
class ConvertedSwin:
    """A checkpoint renamed to torchvision: ``state_dict`` (torchvision names), ``origin``
    (torchvision name -> the file's name), ``layout``, ``ignored`` (``head.*`` keys, on
    purpose) and ``recomputed`` (``attn_mask`` buffers dropped, the model builds its own)."""

    state_dict: dict[str, torch.Tensor]
    origin: dict[str, str]
    layout: str
    ignored: tuple[str, ...] = ()
    recomputed: tuple[str, ...] = ()


def _rename(key: str, layout: str) -> str | None:
    """The torchvision name of a timm/official key, or None if no rule applies."""
    m = _BLOCK.fullmatch(key)
    if m:
        stage, block, rest = int(m.group(1)), m.group(2), m.group(3)
        for old, new in _BLOCK_RENAMES:
            if rest.startswith(old):
                return f"features.{2 * stage + 1}.{block}.{new}{rest[len(old):]}"
        return f"features.{2 * stage + 1}.{block}.{rest}" if rest in _BLOCK_EXACT else None
    m = _DOWNSAMPLE.fullmatch(key)
    if m:
        stage, rest = int(m.group(1)), m.group(2)
        index = 2 * stage if layout == "timm" else 2 * stage + 2
        return f"features.{index}.{rest}" if index > 0 else None
    for old, new in _STEM_RENAMES:
        if key.startswith(old):
            return new + key[len(old):]
    return None


def swin_key_in_layout(key: str, layout: str) -> str:
    """The inverse renaming: the name a torchvision key has in ``layout`` (for messages).

    >>> swin_key_in_layout("features.4.reduction.weight", "official")
    'layers.1.downsample.reduction.weight'
    """
    if layout == "torchvision":
        return key
    for new, old in ((n, o) for o, n in _STEM_RENAMES):
        if key.startswith(new):
            return old + key[len(new):]
    m = re.fullmatch(r"features\.(\d+)\.(.+)", key)
    if not m:
        return key
    index, rest = int(m.group(1)), m.group(2)
    if index % 2:
        block, sub = rest.split(".", 1) if "." in rest else (rest, "")
        for old, new in _BLOCK_RENAMES:
            if sub.startswith(new):
                sub = old + sub[len(new):]
                break
        return f"layers.{(index - 1) // 2}.blocks.{block}.{sub}"
    stage = index // 2 if layout == "timm" else index // 2 - 1
    return f"layers.{stage}.downsample.{rest}"


def convert_swin_state_dict(
    state_dict: Mapping[str, torch.Tensor], layout: str = "auto", source: str = "state_dict"
) -> ConvertedSwin:
    """Rename a Swin checkpoint to torchvision's ``swin_t`` names (see the module docstring).

    ``layout``: ``"auto"`` (:func:`detect_swin_layout`) or one of :data:`SWIN_LAYOUTS`. Keys
    that no rule recognises keep their name (and are then reported as unexpected by the
    loader); nothing is dropped except ``head.*`` and ``attn_mask``, which are listed.
    """
    if layout == "auto":
        layout = detect_swin_layout(state_dict, source)
    elif layout not in SWIN_LAYOUTS:
        raise UserError(f"layout must be 'auto' or one of {sorted(SWIN_LAYOUTS)}, got {layout!r}")
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    ignored, recomputed = [], []
    for key, value in state_dict.items():
        if key.startswith("head."):
            ignored.append(key)
            continue
        if layout != "torchvision" and key.endswith(".attn_mask"):
            recomputed.append(key)
            continue
        new = key if layout == "torchvision" else (_rename(key, layout) or key)
        if new in out:  # two file keys on one name: keep both visible to the user
            raise UserError(f"{source}: keys {origin[new]!r} and {key!r} both map to {new!r}")
        out[new], origin[new] = value, key
    return ConvertedSwin(out, origin, layout, tuple(ignored), tuple(recomputed))


@dataclass(frozen=True)
class SwinLoadReport:
    """What a pretrained Swin file put into a dual-path model (``str()`` is a one-line summary).

    Attributes:
        source: the file.
        layout: ``"torchvision"``, ``"timm"`` or ``"official"``.
        loaded: tensors read from the file into the backbone (parameters and LayerNorms).
        copies: tensors written: the modality-specific units' tensors twice (one copy per
            path), the shared units' once.
        specific_units, shared_units: unit names (``stem``, ``stage1`` ..) on each side.
        ignored: keys skipped on purpose (the ImageNet classifier ``head.*``).
        checked: ``relative_position_index`` buffers found equal to the model's own.
        recomputed: ``attn_mask`` buffers of the file, rebuilt by the model instead.
    """

    source: str
    layout: str
    loaded: int
    copies: int
    specific_units: tuple[str, ...]
    shared_units: tuple[str, ...]
    ignored: tuple[str, ...] = field(default=())
    checked: int = 0
    recomputed: int = 0

    def __str__(self) -> str:
        parts = [
            f"loaded {self.loaded} Swin tensors from {self.source} ({SWIN_LAYOUTS[self.layout]})",
            f"{'+'.join(self.specific_units) or 'no unit'} into both modality paths, "
            f"{'+'.join(self.shared_units) or 'no unit'} shared ({self.copies} tensors written)",
        ]
        if self.ignored:
            shown = ", ".join(self.ignored[:4]) + (", ..." if len(self.ignored) > 4 else "")
            parts.append(f"ignored on purpose: {shown} (classifier)")
        if self.checked or self.recomputed:
            parts.append(
                f"{self.checked} relative_position_index checked, {self.recomputed} attn_mask recomputed"
            )
        return "; ".join(parts)
