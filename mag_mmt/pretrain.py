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
:func:`pretrain` runs the loop on a :class:`~mag_mmt.data.records.ReIDData` and
:func:`save_pretrained` / :func:`load_pretrained` write and read the backbone checkpoint that
``mag-mmt train --init CKPT`` starts from.

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
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, NamedTuple, Sequence

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
    "PretrainResult",
    "pretrain_step",
    "pretrain",
    "save_pretrained",
    "load_pretrained",
    "run_pretraining",
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
# training loop
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


@dataclass
class PretrainResult:
    """What :func:`pretrain` returns: per-epoch ``history`` (dicts of floats) and the
    ``pretrainer`` (backbone at ``pretrainer.model``)."""

    history: list[dict[str, float]]
    pretrainer: MMGLPretrainer
    meta: dict[str, Any] = field(default_factory=dict)


class _ImageCache:
    """Train images of one modality as float ``(3, H, W)`` in [0, 1], read through
    :class:`~mag_mmt.data.images.ImageDataset` and optionally kept in memory as ``uint8``."""

    def __init__(self, data: Any, samples: list, size: tuple[int, int], cache: bool) -> None:
        from .data.images import ImageDataset

        self.dataset = ImageDataset(samples, loader=data.loader, size=size)
        self.cache: dict[int, torch.Tensor] | None = {} if cache else None

    def batch(self, indices: Sequence[int]) -> torch.Tensor:
        imgs = []
        for i in indices:  # image decoding: inherently per file, off the loss hot path
            if self.cache is None:
                imgs.append(self.dataset[i][0])
                continue
            if i not in self.cache:
                self.cache[i] = (self.dataset[i][0] * 255).round().to(torch.uint8)
            imgs.append(self.cache[i].float() / 255)
        return torch.stack(imgs)


def pretrain(
    model: nn.Module,
    data: Any,
    epochs: int,
    *,
    batch_size: int = 32,
    image_size: tuple[int, int] = (288, 144),
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    optimizer: Literal["sgd", "adamw"] = "sgd",
    device: str | torch.device | None = None,
    seed: int = 0,
    pairing: Literal["random", "identity"] = "random",
    normalize: bool = True,
    flip: bool = True,
    steps_per_epoch: int | None = None,
    cache_images: bool | None = None,
    callback: Callable[[dict[str, float]], None] | None = None,
    progress: bool = False,
    **pretrainer_kwargs: Any,
) -> PretrainResult:
    """MMGL pre-training of ``model`` on the train split of ``data``; returns the history.

    Each epoch pairs the visible and thermal train images (``pairing="random"``: a random
    RGB-IR pairing, no labels used -- the self-supervised setting; ``"identity"``: each
    visible image with a random thermal image of its identity), covering
    ``max(#visible, #thermal)`` pairs (the smaller modality is cycled), in batches of
    ``batch_size`` (last partial batch dropped), or ``steps_per_epoch`` batches if given.
    Images are resized to ``image_size`` (float in [0, 1]), with ``flip`` flipped
    horizontally with probability 1/2 *independently per image* (so RGB and IR patches
    cannot be matched by their position alone), and, with ``normalize``, standardised with
    the ImageNet mean/std (as :func:`mag_mmt.engine.normalize_images`, so fine-tuning sees the
    same input statistics). The learning rate follows a cosine schedule per step.

    Args:
        model: backbone (see :func:`feature_maps`); trained in place.
        data: a :class:`~mag_mmt.data.records.ReIDData` (``data.train`` is used).
        epochs: number of epochs (>= 1).
        optimizer: ``"sgd"`` (momentum, weight decay) or ``"adamw"``.
        cache_images: keep decoded images in memory (uint8); default when the train split
            has at most 20000 images.
        callback: called with each epoch's history entry.
        progress: show a tqdm bar over the steps of each epoch.
        **pretrainer_kwargs: passed to :class:`MMGLPretrainer` (grid, num_permutations, ...).

    Returns:
        :class:`PretrainResult`; ``history[e]`` has ``epoch``, ``loss``, ``global_loss``,
        ``local_loss``, ``perm_accuracy``, ``cycle_fraction``, ``lr``, ``seconds``.
    """
    from .data.records import THERMAL, VISIBLE
    from .engine import normalize_images, random_flip

    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if pairing not in ("random", "identity"):
        raise ValueError(f"pairing must be 'random' or 'identity', got {pairing!r}")
    if optimizer not in ("sgd", "adamw"):
        raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {optimizer!r}")
    vis = [s for s in data.train if s.modality == VISIBLE]
    th = [s for s in data.train if s.modality == THERMAL]
    if not vis or not th:
        raise ValueError(
            f"{getattr(data, 'name', 'data')}: pre-training needs visible and thermal train images, "
            f"got {len(vis)} visible and {len(th)} thermal"
        )
    n_pairs = max(len(vis), len(th))
    if batch_size > n_pairs:
        raise ValueError(f"batch_size={batch_size} exceeds the {n_pairs} pairs of the train split")
    if steps_per_epoch is None:
        steps_per_epoch = n_pairs // batch_size
    elif steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
    device = torch.device(device) if device is not None else (
        torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    )
    torch.manual_seed(seed)
    model.to(device)
    pretrainer_kwargs.setdefault("probe_size", tuple(image_size))
    pretrainer_kwargs.setdefault("seed", seed)
    pre = MMGLPretrainer(model, **pretrainer_kwargs).to(device)
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            pre.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True
        )
    else:
        opt = torch.optim.AdamW(pre.parameters(), lr=lr, weight_decay=weight_decay)
    total_steps = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    )
    if cache_images is None:
        cache_images = len(data.train) <= 20000
    size = (int(image_size[0]), int(image_size[1]))
    vis_imgs = _ImageCache(data, vis, size, cache_images)
    th_imgs = _ImageCache(data, th, size, cache_images)
    th_by_id: dict[int, list[int]] = {}
    for j, s in enumerate(th):
        th_by_id.setdefault(s.identity, []).append(j)
    rng = np.random.default_rng(seed)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    history: list[dict[str, float]] = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        if pairing == "random":
            vi = np.resize(rng.permutation(len(vis)), n_pairs)
            ti = np.resize(rng.permutation(len(th)), n_pairs)
            order = rng.permutation(n_pairs)
            vi, ti = vi[order], ti[order]
        else:
            vi = np.resize(rng.permutation(len(vis)), n_pairs)
            ti = np.array([
                rng.choice(th_by_id[vis[i].identity]) if vis[i].identity in th_by_id
                else rng.integers(len(th))
                for i in vi
            ])
        sums = torch.zeros(5, device=device)
        steps: Any = range(steps_per_epoch)
        if progress:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc=f"mmgl epoch {epoch}/{epochs}", leave=False, dynamic_ncols=True)
        for step in steps:
            lo = (step * batch_size) % max(1, n_pairs - batch_size + 1)
            rgb = vis_imgs.batch(vi[lo : lo + batch_size].tolist()).to(device, non_blocking=True)
            ir = th_imgs.batch(ti[lo : lo + batch_size].tolist()).to(device, non_blocking=True)
            if flip:
                rgb, ir = random_flip(rgb, gen), random_flip(ir, gen)
            if normalize:
                rgb, ir = normalize_images(rgb), normalize_images(ir)
            out = pretrain_step(pre, opt, rgb, ir, generator=gen)
            sums += torch.stack(list(out))
            sched.step()
        vals = (sums / steps_per_epoch).tolist()  # one host sync per epoch
        entry = {
            "epoch": float(epoch),
            "loss": vals[0],
            "global_loss": vals[1],
            "local_loss": vals[2],
            "perm_accuracy": vals[3],
            "cycle_fraction": vals[4],
            "lr": float(opt.param_groups[0]["lr"]),
            "seconds": time.perf_counter() - start,
        }
        history.append(entry)
        if callback is not None:
            callback(entry)
    meta = {
        "method": "mmgl",
        "epochs": epochs,
        "batch_size": batch_size,
        "image_size": list(size),
        "optimizer": optimizer,
        "lr": lr,
        "seed": seed,
        "pairing": pairing,
        "normalize": normalize,
        "flip": flip,
        "dataset": getattr(data, "name", None),
        **pre.config(),
    }
    return PretrainResult(history=history, pretrainer=pre, meta=meta)


# --------------------------------------------------------------------------------------
# checkpoint
# --------------------------------------------------------------------------------------


def save_pretrained(
    path: str | os.PathLike[str],
    model: nn.Module | MMGLPretrainer,
    *,
    meta: dict[str, Any] | None = None,
    history: list[dict[str, float]] | None = None,
    model_name: str | None = None,
    config: dict[str, Any] | None = None,
) -> Any:
    """Write the backbone weights as a pre-training checkpoint (atomically).

    Layout (a :mod:`mag_mmt.checkpoint` file)::

        {"format": "mag-mmt/2", "kind": "pretrain",
         "model": backbone.state_dict(),          # what --init loads
         "heads": {"perm_head": ..., "patch_proj": ...} or None,
         "perm_set": (K, gh*gw) int64 or None,
         "meta": {"method": "mmgl", "model_name": ..., grid, num_permutations, ...},
         "history": [per-epoch dicts],
         "config": TrainConfig.to_dict() of the run or None}

    Given an :class:`MMGLPretrainer`, its backbone goes to ``"model"`` and its heads and
    permutation set are stored alongside. Returns the path.
    """
    from .checkpoint import save_checkpoint

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
    state = {
        "kind": PRETRAIN_KIND,
        "model": {k: v.detach().cpu() for k, v in backbone.state_dict().items()},
        "heads": heads,
        "perm_set": perms,
        "meta": meta,
        "history": list(history or []),
        "config": config,
    }
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


def run_pretraining(
    cfg: Any,
    data: Any,
    *,
    epochs: int,
    batch_size: int = 32,
    lr: float = 0.01,
    progress: bool = True,
    filename: str = "pretrain.pt",
    log: Callable[[str], None] | None = print,
    **kwargs: Any,
) -> Any:
    """What ``mag-mmt pretrain`` runs: build the model of ``cfg``, pre-train, write ``OUT/pretrain.pt``.

    ``cfg`` is a :class:`mag_mmt.engine.TrainConfig` (``model``, ``share_point``,
    ``pretrained``, ``img_size``, ``seed``, ``device``, ``out`` are used); the model is built
    exactly as ``mag-mmt train`` builds it (:func:`mag_mmt.engine.build_model_for`, input size
    :func:`mag_mmt.engine.image_size`), so ``mag-mmt train --init OUT/pretrain.pt`` with the
    same ``--model``/``--share-point`` finds every backbone tensor. Also writes
    ``OUT/pretrain_history.json``. ``kwargs`` go to :func:`pretrain`. Returns the checkpoint path.
    """
    from pathlib import Path

    from . import engine

    device = engine.resolve_device(cfg.device)
    num_classes = max(1, data.num_train_identities)
    model = engine.build_model_for(cfg, num_classes)
    size = engine.image_size(cfg, data)

    def report(entry: dict[str, float]) -> None:
        if log is not None:
            log(
                f"mmgl epoch {int(entry['epoch'])}/{epochs}: loss {entry['loss']:.4f} "
                f"(global {entry['global_loss']:.4f}, local {entry['local_loss']:.4f}) "
                f"perm-acc {entry['perm_accuracy']:.3f} cycle {entry['cycle_fraction']:.3f} "
                f"{entry['seconds']:.1f}s"
            )

    result = pretrain(
        model, data, epochs, batch_size=batch_size, image_size=size, lr=lr, device=device,
        seed=cfg.seed, progress=progress, callback=report, **kwargs,
    )
    out = Path(cfg.out)
    meta = {
        **result.meta,
        "model_name": cfg.model,
        "share_point": cfg.share_point,
        "num_classes": num_classes,
    }
    path = save_pretrained(
        out / filename, result.pretrainer, meta=meta, history=result.history,
        config=cfg.to_dict() if hasattr(cfg, "to_dict") else None,
    )
    engine.write_json(out / "pretrain_history.json", {"meta": meta, "history": result.history})
    return path
