"""MMGL: self-supervised modality-aware multiple-granularity pre-training.

The backbone is pre-trained from scratch on the unlabelled RGB-IR images of the ReID data
(our reading of the MMGL abstract, docs/method.md#mmgl-pre-training):

* **Global objective** -- the RGB and the IR image of a pair are cut into a ``gh x gw`` grid
  of tiles and shuffled by the *same* permutation, drawn from a fixed set chosen for a large
  minimum Hamming distance (:func:`~mag_mmt.functional.permutation_set`,
  :func:`~mag_mmt.functional.jigsaw_shuffle`). A single
  classifier over that set (one shared "permutation space") predicts the permutation index
  from the pooled features of either modality; cross-entropy, averaged over both modalities.
* **Local objective** -- the spatial feature maps of the two shuffled images give patch
  features (projected, L2-normalised). RGB patch ``i`` and IR patch ``j`` are a
  *cycle-consistent* pair when ``j`` is the nearest IR neighbour of ``i`` and ``i`` the nearest
  RGB neighbour of ``j`` (RGB -> IR -> RGB returns to the start,
  :func:`~mag_mmt.functional.cycle_consistent_pairs`). An InfoNCE over patches
  (:func:`~mag_mmt.functional.cycle_infonce_loss`) pulls
  those pairs together against the other patches.

Total loss: ``global_weight * CE + local_weight * InfoNCE`` (:class:`MMGLPretrainer`).
:func:`save_pretrained` / :func:`load_pretrained` write and read the backbone checkpoint that
``mag-mmt train --init CKPT`` starts from; the loop that trains it is
:func:`mag_mmt.training.pretrain`.

Backbone interface (see :func:`feature_maps`): the model exposes
``forward_feature_map(x1, x2, modal=0) -> (B1 + B2, C, h, w)``, the spatial map before global
pooling, following the AGW forward contract (``modal=0``: ``x1`` visible and ``x2`` thermal,
concatenated in that order; ``1``: ``x1`` through the visible path; ``2``: ``x2`` through the
thermal path). The library's models (``SmallCNN``, ``DualPathSwin``) have it. The jigsaw and
contrastive primitives are in :mod:`mag_mmt.functional.jigsaw` and
:mod:`mag_mmt.functional.contrastive`; :class:`MMGLPretrainer` has a runnable example.
"""

from __future__ import annotations

import math
import os
from typing import Any, Literal, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ._validation import check_tensor
from .functional.contrastive import Negatives, cycle_consistent_pairs, cycle_infonce_loss
from .functional.jigsaw import Remainder, _check_grid, jigsaw_shuffle, min_hamming_distance, permutation_set

__all__ = [
    "permutation_loss",
    "feature_maps",
    "MMGLOutput",
    "MMGLPretrainer",
    "pretrain_step",
    "pretrained_state",
    "save_pretrained",
    "load_pretrained",
    "PRETRAIN_KIND",
]

#: ``kind`` field of checkpoints written by :func:`save_pretrained`
PRETRAIN_KIND = "pretrain"


# --------------------------------------------------------------------------------------
# global objective
# --------------------------------------------------------------------------------------


def permutation_loss(
    logits: Sequence[torch.Tensor], targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of permutation logits of every modality against the shared targets.

    Args:
        logits: one ``(B, K)`` tensor per modality, from the *same* classifier.
        targets: ``(B,)`` permutation indices.

    Returns:
        ``(loss, accuracy)``: the CE averaged over modalities, and the fraction of correct
        predictions over all modalities (detached).
    """
    if not logits:
        raise ValueError("logits must hold at least one (B, K) tensor")
    stacked = torch.cat(list(logits), dim=0)
    tgt = targets.repeat(len(logits))
    loss = F.cross_entropy(stacked.float(), tgt)
    acc = (stacked.detach().argmax(dim=1) == tgt).float().mean()
    return loss, acc


# --------------------------------------------------------------------------------------
# backbone adapter
# --------------------------------------------------------------------------------------


def feature_maps(
    model: nn.Module, rgb: torch.Tensor, ir: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spatial feature maps ``(B, C, h, w)`` of the RGB and the IR batch, in one forward pass.

    The backbone interface MMGL needs is ``model.forward_feature_map(x1, x2, modal=0) ->
    (B1 + B2, C, h, w)``: the map before global pooling, with the AGW contract (``x1``
    visible through the visible path, ``x2`` thermal through the thermal path, rows
    concatenated visible first). Every :class:`mag_mmt.models.DualPathNet` (``SmallCNN``,
    ``DualPathSwin``) has it. Both batches go through the network together, so batch-norm
    statistics of shared layers mix the modalities exactly as in fine-tuning.

    Args:
        rgb: ``(B1, 3, H, W)``; ir: ``(B2, 3, H, W)``.

    Returns:
        ``(map_rgb (B1, C, h, w), map_ir (B2, C, h, w))``.

    Raises:
        TypeError: the model has no ``forward_feature_map``.
    """
    fn = getattr(model, "forward_feature_map", None)
    if not callable(fn):
        raise TypeError(
            f"{type(model).__name__} has no forward_feature_map(x1, x2, modal) -> (B, C, h, w); MMGL "
            "pre-training needs the spatial feature map before global pooling"
        )
    out = fn(rgb, ir, 0)
    if not isinstance(out, torch.Tensor) or out.dim() != 4 or out.shape[0] != rgb.shape[0] + ir.shape[0]:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"the backbone's feature map must be (B_rgb + B_ir, C, h, w) = "
            f"({rgb.shape[0] + ir.shape[0]}, C, h, w), got {shape}"
        )
    return out[: rgb.shape[0]], out[rgb.shape[0] :]


# --------------------------------------------------------------------------------------
# the pretrainer module
# --------------------------------------------------------------------------------------


class MMGLOutput(NamedTuple):
    """Losses and diagnostics of one :class:`MMGLPretrainer` call (0-d tensors)."""

    loss: torch.Tensor
    global_loss: torch.Tensor
    local_loss: torch.Tensor
    perm_accuracy: torch.Tensor
    cycle_fraction: torch.Tensor


def _mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Module:
    if hidden <= 0:
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))


def _infer_channels(model: nn.Module, probe_size: tuple[int, int]) -> int:
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = torch.zeros(1, 3, *probe_size, device=device)
            fmap, _ = feature_maps(model, x, x)
    finally:
        model.train(was_training)
    return int(fmap.shape[1])


class MMGLPretrainer(nn.Module):
    """MMGL loss around a backbone: jigsaw permutation classification + cycle-consistent InfoNCE.

    ``forward(rgb, ir)`` shuffles each RGB-IR pair with a random permutation of the fixed set
    (the same one for both images), runs the backbone once on both batches
    (:func:`feature_maps`), and returns :class:`MMGLOutput` with
    ``loss = global_weight * CE + local_weight * InfoNCE``.

    Args:
        model: backbone with ``forward_feature_map(x1, x2, modal)`` (see :func:`feature_maps`).
        grid: jigsaw grid ``(gh, gw)``; default ``(3, 3)``.
        num_permutations: size of the permutation set (classes of the global head); default 100.
        feature_channels: channels ``C`` of the feature map; inferred with a dry run on a
            ``probe_size`` input when ``None``.
        probe_size: ``(H, W)`` of that dry run; default ``(96, 48)``.
        head_hidden: hidden width of the permutation classifier (0: linear); default 512.
        proj_dim: patch projection size; default 128. proj_hidden: its hidden width; 512.
        local_grid: ``(h, w)`` to average-pool the feature map to before taking patches
            (``None``: every position of the map is a patch).
        temperature, weights, negatives: of :func:`cycle_infonce_loss`.
        global_weight, local_weight: the loss weights (``local_weight`` is lambda).
        remainder: of :func:`jigsaw_shuffle`; default ``"keep"`` (any input size works).
        seed: seed of :func:`permutation_set`.

    Example::

        >>> class Tiny(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        ...     def forward_feature_map(self, x1, x2, modal=0):
        ...         x = {0: lambda: torch.cat([x1, x2]), 1: lambda: x1, 2: lambda: x2}[modal]()
        ...         return self.conv(x)
        >>> pre = MMGLPretrainer(Tiny(), grid=(2, 2), num_permutations=6, probe_size=(16, 8))
        >>> out = pre(torch.rand(4, 3, 16, 8), torch.rand(4, 3, 16, 8))
        >>> out.loss.backward()
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        grid: Sequence[int] = (3, 3),
        num_permutations: int = 100,
        feature_channels: int | None = None,
        probe_size: tuple[int, int] = (96, 48),
        head_hidden: int = 512,
        proj_dim: int = 128,
        proj_hidden: int = 512,
        local_grid: tuple[int, int] | None = None,
        temperature: float = 0.1,
        weights: tuple[float, float] = (0.5, 0.5),
        negatives: Negatives = "batch",
        global_weight: float = 1.0,
        local_weight: float = 1.0,
        remainder: Remainder = "keep",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.grid = _check_grid(grid)
        if num_permutations < 2:
            raise ValueError(f"num_permutations must be at least 2, got {num_permutations}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        if negatives not in ("pair", "batch"):
            raise ValueError(f"negatives must be 'pair' or 'batch', got {negatives!r}")
        if remainder not in ("error", "crop", "keep"):
            raise ValueError(f"remainder must be 'error', 'crop' or 'keep', got {remainder!r}")
        if global_weight < 0 or local_weight < 0:
            raise ValueError("global_weight and local_weight must be non-negative")
        self.model = model
        perms = permutation_set(self.grid[0] * self.grid[1], num_permutations, seed)
        self.register_buffer("perm_set", perms, persistent=True)
        self.min_hamming = min_hamming_distance(perms)
        if feature_channels is None:
            feature_channels = _infer_channels(model, probe_size)
        self.feature_channels = int(feature_channels)
        self.perm_head = _mlp(self.feature_channels, head_hidden, num_permutations)
        self.patch_proj = _mlp(self.feature_channels, proj_hidden, proj_dim)
        self.local_grid = None if local_grid is None else _check_grid(local_grid)
        self.temperature = float(temperature)
        self.weights = (float(weights[0]), float(weights[1]))
        self.negatives = negatives
        self.global_weight = float(global_weight)
        self.local_weight = float(local_weight)
        self.remainder = remainder
        self.seed = seed

    @property
    def num_permutations(self) -> int:
        return int(self.perm_set.shape[0])

    def heads(self) -> nn.ModuleDict:
        """The MMGL-only modules (not part of the backbone checkpoint's ``model``)."""
        return nn.ModuleDict({"perm_head": self.perm_head, "patch_proj": self.patch_proj})

    def patch_features(self, fmap: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` map -> ``(B, h*w, proj_dim)`` projected, L2-normalised patch features."""
        if self.local_grid is not None:
            fmap = F.adaptive_avg_pool2d(fmap, self.local_grid)
        return F.normalize(self.patch_proj(fmap.flatten(2).transpose(1, 2)), dim=-1)

    def sample_permutations(
        self, batch_size: int, device: torch.device, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``(batch_size,)`` uniform random indices into the permutation set."""
        return torch.randint(
            self.num_permutations, (batch_size,), device=device, generator=generator
        )

    def forward(
        self,
        rgb: torch.Tensor,
        ir: torch.Tensor,
        perm_indices: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> MMGLOutput:
        """MMGL losses on a batch of pairs.

        Args:
            rgb: ``(B, 3, H, W)`` visible images; ir: ``(B, C, H, W)`` thermal images (the
                backbone decides which ``C`` it accepts); row ``b`` of each is pair ``b``.
            perm_indices: ``(B,)`` permutation indices; drawn uniformly when ``None``
                (with ``generator`` if given, on the images' device).
        """
        check_tensor(rgb, "rgb", 4)
        check_tensor(ir, "ir", 4)
        if rgb.shape[0] != ir.shape[0]:
            raise ValueError(
                f"rgb and ir must hold the same number of pairs, got {rgb.shape[0]} and {ir.shape[0]}"
            )
        if perm_indices is None:
            perm_indices = self.sample_permutations(rgb.shape[0], rgb.device, generator)
        s_rgb, s_ir = jigsaw_shuffle(
            (rgb, ir), perm_indices, self.perm_set, self.grid,
            remainder=self.remainder, validate=False,
        )
        f_rgb, f_ir = feature_maps(self.model, s_rgb, s_ir)
        logits = [self.perm_head(f.mean(dim=(2, 3))) for f in (f_rgb, f_ir)]
        global_loss, acc = permutation_loss(logits, perm_indices)
        p_rgb, p_ir = self.patch_features(f_rgb), self.patch_features(f_ir)
        pairs = cycle_consistent_pairs(p_rgb.detach(), p_ir.detach())
        local_loss = cycle_infonce_loss(
            p_rgb, p_ir, temperature=self.temperature, weights=self.weights,
            negatives=self.negatives, pairs=pairs,
        )
        loss = self.global_weight * global_loss + self.local_weight * local_loss
        return MMGLOutput(loss, global_loss.detach(), local_loss.detach(), acc, pairs[1].float().mean())

    def config(self) -> dict[str, Any]:
        """The settings, as stored in the checkpoint's ``meta``."""
        return {
            "grid": list(self.grid),
            "num_permutations": self.num_permutations,
            "min_hamming_distance": self.min_hamming,
            "feature_channels": self.feature_channels,
            "local_grid": None if self.local_grid is None else list(self.local_grid),
            "temperature": self.temperature,
            "weights": list(self.weights),
            "negatives": self.negatives,
            "global_weight": self.global_weight,
            "local_weight": self.local_weight,
            "remainder": self.remainder,
            "seed": self.seed,
        }


# --------------------------------------------------------------------------------------
# one optimisation step
# --------------------------------------------------------------------------------------


def pretrain_step(
    pretrainer: MMGLPretrainer,
    optimizer: torch.optim.Optimizer,
    rgb: torch.Tensor,
    ir: torch.Tensor,
    generator: torch.Generator | None = None,
) -> MMGLOutput:
    """One optimisation step: forward, backward, ``optimizer.step()``. Returns detached losses
    (0-d tensors on the device; no host sync)."""
    pretrainer.train()
    optimizer.zero_grad(set_to_none=True)
    out = pretrainer(rgb, ir, generator=generator)
    out.loss.backward()
    optimizer.step()
    return MMGLOutput(*(t.detach() for t in out))


# --------------------------------------------------------------------------------------
# checkpoint
# --------------------------------------------------------------------------------------


def pretrained_state(
    model: nn.Module | MMGLPretrainer,
    *,
    meta: dict[str, Any] | None = None,
    history: list[dict[str, float]] | None = None,
    model_name: str | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The pre-training checkpoint of ``model`` as plain data (what :func:`save_pretrained` writes)::

        {"kind": "pretrain",
         "model": backbone.state_dict(),          # what --init loads
         "heads": {"perm_head": ..., "patch_proj": ...} or None,
         "perm_set": (K, gh*gw) int64 or None,
         "meta": {"method": "mmgl", "model_name": ..., grid, num_permutations, ...},
         "history": [per-epoch dicts],
         "config": the run's configuration or None}

    Given an :class:`MMGLPretrainer`, its backbone goes to ``"model"`` and its heads and
    permutation set are stored alongside.
    """
    if isinstance(model, MMGLPretrainer):
        backbone, heads, perms = model.model, model.heads().state_dict(), model.perm_set.cpu()
        meta = {**model.config(), **(meta or {})}
    else:
        backbone, heads, perms = model, None, None
        meta = dict(meta or {})
    meta.setdefault("method", "mmgl")
    if model_name is not None:
        meta["model_name"] = model_name
    meta.setdefault("model_class", type(backbone).__name__)
    return {
        "kind": PRETRAIN_KIND,
        "model": {k: v.detach().cpu() for k, v in backbone.state_dict().items()},
        "heads": heads,
        "perm_set": perms,
        "meta": meta,
        "history": list(history or []),
        "config": config,
    }


def save_pretrained(
    path: str | os.PathLike[str],
    model: nn.Module | MMGLPretrainer,
    *,
    meta: dict[str, Any] | None = None,
    history: list[dict[str, float]] | None = None,
    model_name: str | None = None,
    config: dict[str, Any] | None = None,
) -> Any:
    """Write :func:`pretrained_state` of ``model`` as a :mod:`mag_mmt.checkpoint` file
    (``"format": "mag-mmt/2"``, atomically). Returns the path."""
    from .checkpoint import save_checkpoint

    state = pretrained_state(model, meta=meta, history=history, model_name=model_name, config=config)
    return save_checkpoint(state, path)


def load_pretrained(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    exclude: Sequence[str] = (),
    strict: bool = False,
) -> dict[str, list[str]]:
    """Initialise ``model`` from a checkpoint's ``"model"`` state dict (``--init CKPT``).

    Every key present in both with equal shape is loaded; keys starting with a prefix in
    ``exclude`` (e.g. ``("classifier.",)``), keys whose shape differs (an identity
    classifier of another size) and keys only on one side are reported, not loaded. With
    ``strict=True`` anything not loaded raises ``ValueError``. Accepts ``"pretrain"`` and
    ``"train"`` checkpoints.

    Returns:
        ``{"loaded": [...], "skipped": [...], "missing": [...], "unexpected": [...]}``
        (``skipped`` = excluded or shape mismatch, ``missing`` = in ``model`` only,
        ``unexpected`` = in the checkpoint only).
    """
    from .checkpoint import load_checkpoint

    state = load_checkpoint(path)
    src = state["model"]
    own = model.state_dict()
    report: dict[str, list[str]] = {"loaded": [], "skipped": [], "missing": [], "unexpected": []}
    take = {}
    for key, value in src.items():
        if key not in own:
            report["unexpected"].append(key)
        elif any(key.startswith(p) for p in exclude) or own[key].shape != value.shape:
            report["skipped"].append(key)
        else:
            take[key] = value
            report["loaded"].append(key)
    report["missing"] = [k for k in own if k not in src]
    if strict and (report["skipped"] or report["missing"] or report["unexpected"]):
        raise ValueError(
            f"{os.fspath(path)!r} does not match {type(model).__name__} exactly: "
            f"{len(report['skipped'])} skipped, {len(report['missing'])} missing, "
            f"{len(report['unexpected'])} unexpected keys (first: "
            f"{(report['skipped'] + report['missing'] + report['unexpected'])[0]!r})"
        )
    model.load_state_dict(take, strict=False)
    return report
