"""The MMGL pre-training loop, built on the training loop's pieces.

:func:`pretrain` trains a backbone with the MMGL objectives (:class:`mag_mmt.pretrain.MMGLPretrainer`:
jigsaw permutation classification + cycle-consistent patch InfoNCE) on the unlabelled RGB-IR
pairs of a dataset's train split. Device, seeding, optimiser, image loading, flip and
normalisation are the training loop's (:mod:`mag_mmt.training.setup`); the checkpoint is a
resumable run state (:mod:`mag_mmt.training.checkpoints`) whose ``"model"`` is the backbone
that ``mag-mmt train --init`` loads. :func:`run_pretraining` is ``mag-mmt pretrain``.

>>> import torch
>>> from mag_mmt.data.records import ReIDData, Sample
>>> from mag_mmt.models import build_model
>>> train = [Sample(f"img{i}{m}", i, 1 + 2 * m, m) for i in range(4) for m in (0, 1)]  # visible 0, thermal 1
>>> data = ReIDData("toy", train, [], [], loader=lambda s: torch.rand(3, 32, 16))
>>> result = pretrain(build_model("small-cnn", 4), data, epochs=1, batch_size=4, image_size=(32, 16),
...                   device="cpu", grid=(2, 2), num_permutations=6)
>>> sorted(result.history[0])[:3], result.meta["num_permutations"]
(['cycle_fraction', 'epoch', 'global_loss'], 6)
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn as nn

from ..checkpoint import load_checkpoint
from ..errors import UserError
from ..pretrain import MMGLPretrainer, pretrain_step, pretrained_state
from ..schedule import cosine_lr
from .checkpoints import restore_run_state, save_run_state, write_json
from .setup import (
    batch_loader,
    build_model_for,
    build_optimizer,
    image_size as image_size_for,
    load_data,
    normalize_images,
    random_flip,
    resolve_device,
    seed_everything,
)

__all__ = ["PretrainResult", "pretrain", "run_pretraining"]

#: ``meta`` entries that may differ when a pre-training run is resumed
PRETRAIN_MAY_CHANGE = frozenset({"epochs"})


@dataclass
class PretrainResult:
    """What :func:`pretrain` returns: per-epoch ``history`` (dicts of floats), the
    ``pretrainer`` (backbone at ``pretrainer.model``) and the run's settings ``meta``."""

    history: list[dict[str, float]]
    pretrainer: MMGLPretrainer
    meta: dict[str, Any] = field(default_factory=dict)


def _pairs(vis: list, th: list, n_pairs: int, pairing: str, seed: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """Visible and thermal indices of the ``n_pairs`` pairs of ``epoch`` (a function of
    ``(seed, epoch)``, so a resumed run draws the same pairs)."""
    rng = np.random.default_rng([seed, epoch])
    vi = np.resize(rng.permutation(len(vis)), n_pairs)
    if pairing == "random":
        ti = np.resize(rng.permutation(len(th)), n_pairs)
        order = rng.permutation(n_pairs)
        return vi[order], ti[order]
    th_by_id: dict[int, list[int]] = {}
    for j, s in enumerate(th):
        th_by_id.setdefault(s.identity, []).append(j)
    ti = np.array([rng.choice(th_by_id[vis[i].identity]) if vis[i].identity in th_by_id else rng.integers(len(th))
                   for i in vi])
    return vi, ti


def _check_resumable(path: Path, state: dict[str, Any], meta: dict[str, Any]) -> None:
    """:class:`UserError` naming the settings in which ``meta`` differs from the checkpoint's."""
    saved = state.get("meta") or {}
    diffs = [f"{k}: {saved.get(k)!r} -> {meta.get(k)!r}" for k in sorted(set(saved) | set(meta))
             if k not in PRETRAIN_MAY_CHANGE and k in meta and saved.get(k) != meta.get(k)]
    if diffs or "optimizer" not in state:
        why = "; ".join(diffs) if diffs else "it holds weights only, no optimiser or random state"
        raise UserError(f"cannot resume {path}: {why}. Resume with the same settings, or start a new run "
                        f"(another --out; `mag-mmt train --init {path}` fine-tunes from it)")


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
    num_workers: int = 0,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    extra_meta: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
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
    Images are loaded as in training (resized to ``image_size``, float in [0, 1]), with
    ``flip`` flipped horizontally with probability 1/2 *independently per image* (so RGB and
    IR patches cannot be matched by their position alone) and, with ``normalize``,
    standardised like the training input (:func:`~mag_mmt.training.normalize_images`). The
    learning rate follows a cosine schedule per step.

    Args:
        model: backbone with ``forward_feature_map`` (:func:`mag_mmt.pretrain.feature_maps`);
            trained in place.
        data: a :class:`~mag_mmt.data.records.ReIDData` (``data.train`` is used).
        epochs: number of epochs (>= 1).
        optimizer: ``"sgd"`` (Nesterov momentum, weight decay) or ``"adamw"``.
        device: as ``--device`` (:func:`~mag_mmt.device.resolve_device`).
        num_workers: image-decoding processes (as ``TrainConfig.num_workers``).
        checkpoint: write the run state here after every epoch (a ``"pretrain"`` checkpoint:
            the backbone, the MMGL heads, optimiser, random states, history).
        resume: continue from ``checkpoint`` if it exists (same settings; ``epochs`` may grow).
        extra_meta: more entries for the checkpoint's ``meta`` (model name, ...).
        config: the run's configuration, stored as the checkpoint's ``"config"``.
        callback: called with each epoch's history entry.
        progress: show a tqdm bar over the steps of each epoch.
        **pretrainer_kwargs: passed to :class:`~mag_mmt.pretrain.MMGLPretrainer` (grid,
            num_permutations, ...).

    Returns:
        :class:`PretrainResult`; ``history[e]`` has ``epoch``, ``loss``, ``global_loss``,
        ``local_loss``, ``perm_accuracy``, ``cycle_fraction``, ``lr``, ``seconds``.
    """
    from ..data.images import ImageDataset
    from ..modalities import THERMAL, VISIBLE

    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise UserError(f"epochs must be a positive integer, got {epochs!r}")
    if batch_size < 1:
        raise UserError(f"batch_size must be positive, got {batch_size}")
    if pairing not in ("random", "identity"):
        raise UserError(f"pairing must be 'random' or 'identity', got {pairing!r}")
    if optimizer not in ("sgd", "adamw"):
        raise UserError(f"optimizer must be 'sgd' or 'adamw', got {optimizer!r}")
    vis = [s for s in data.train if s.modality == VISIBLE]
    th = [s for s in data.train if s.modality == THERMAL]
    if not vis or not th:
        raise UserError(
            f"{getattr(data, 'name', 'data')}: pre-training needs visible and thermal train images, "
            f"got {len(vis)} visible and {len(th)} thermal"
        )
    n_pairs = max(len(vis), len(th))
    if batch_size > n_pairs:
        raise UserError(f"batch_size={batch_size} exceeds the {n_pairs} pairs of the train split")
    if steps_per_epoch is None:
        steps_per_epoch = n_pairs // batch_size
    elif steps_per_epoch < 1:
        raise UserError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
    device = resolve_device(device)
    seed_everything(seed)
    model.to(device)
    pretrainer_kwargs.setdefault("probe_size", tuple(image_size))
    pretrainer_kwargs.setdefault("seed", seed)
    pre = MMGLPretrainer(model, **pretrainer_kwargs).to(device)
    opt = build_optimizer(optimizer, pre.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    size = (int(image_size[0]), int(image_size[1]))
    meta = {
        "method": "mmgl", "epochs": epochs, "batch_size": batch_size, "image_size": list(size),
        "optimizer": optimizer, "lr": lr, "seed": seed, "pairing": pairing, "normalize": normalize, "flip": flip,
        "steps_per_epoch": steps_per_epoch, "dataset": getattr(data, "name", None),
        **pre.config(), **(extra_meta or {}),
    }
    gen = torch.Generator(device=device).manual_seed(seed)
    history: list[dict[str, float]] = []
    start_epoch = 0
    if resume and checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint, map_location="cpu", kind="pretrain")
        _check_resumable(Path(checkpoint), state, meta)
        restore_run_state(state, model=pre.model, optimizer=opt, generator=gen)
        pre.heads().load_state_dict(state["heads"])
        start_epoch, history = int(state["epoch"]), list(state["history"])
    dataset = ImageDataset(vis + th, loader=data.loader, size=size)
    total_steps = epochs * steps_per_epoch
    for epoch in range(start_epoch + 1, epochs + 1):
        start = time.perf_counter()
        vi, ti = _pairs(vis, th, n_pairs, pairing, seed, epoch)
        batches = []
        for step in range(steps_per_epoch):
            lo = (step * batch_size) % max(1, n_pairs - batch_size + 1)
            batches.append(vi[lo : lo + batch_size].tolist() + (len(vis) + ti[lo : lo + batch_size]).tolist())
        loader: Any = batch_loader(dataset, batches, device, num_workers)
        if progress:
            from tqdm.auto import tqdm

            loader = tqdm(loader, total=steps_per_epoch, desc=f"mmgl epoch {epoch}/{epochs}", leave=False,
                          dynamic_ncols=True)
        sums = torch.zeros(5, device=device)
        for step, (images, *_labels) in enumerate(loader):
            for group in opt.param_groups:
                group["lr"] = cosine_lr(lr, (epoch - 1) * steps_per_epoch + step, total_steps)
            images = images.to(device, non_blocking=True)
            rgb, ir = images[:batch_size], images[batch_size:]
            if flip:
                rgb, ir = random_flip(rgb, gen), random_flip(ir, gen)
            if normalize:
                rgb, ir = normalize_images(rgb), normalize_images(ir)
            out = pretrain_step(pre, opt, rgb, ir, generator=gen)
            sums += torch.stack(list(out))
        vals = (sums / steps_per_epoch).tolist()  # one host sync per epoch
        entry = {"epoch": float(epoch), "loss": vals[0], "global_loss": vals[1], "local_loss": vals[2],
                 "perm_accuracy": vals[3], "cycle_fraction": vals[4],
                 "lr": cosine_lr(lr, epoch * steps_per_epoch, total_steps), "seconds": time.perf_counter() - start}
        history.append(entry)
        if checkpoint is not None:
            fields = pretrained_state(pre, meta=meta, history=history, config=config)
            fields.pop("kind"), fields.pop("model")
            save_run_state(checkpoint, "pretrain", model=pre.model, optimizer=opt, generator=gen, epoch=epoch,
                           step=epoch * steps_per_epoch, **fields)
        if callback is not None:
            callback(entry)
    return PretrainResult(history=history, pretrainer=pre, meta=meta)


def run_pretraining(
    cfg: Any,
    data: Any = None,
    *,
    epochs: int,
    batch_size: int = 32,
    lr: float = 0.01,
    progress: bool = True,
    filename: str = "pretrain.pt",
    log: Callable[[str], None] | None = print,
    **kwargs: Any,
) -> Path:
    """What ``mag-mmt pretrain`` runs: build the model of ``cfg``, pre-train, write ``OUT/pretrain.pt``.

    ``cfg`` is a :class:`~mag_mmt.training.TrainConfig` (``data``, ``model``, ``share_point``,
    ``pretrained``, ``img_size``, ``seed``, ``device``, ``num_workers``, ``resume``, ``out`` are
    used); ``data`` is loaded from it when not given. The model is built exactly as
    ``mag-mmt train`` builds it (:func:`~mag_mmt.training.build_model_for`, input size
    :func:`~mag_mmt.training.image_size`), so ``mag-mmt train --init OUT/pretrain.pt`` with the
    same ``--model``/``--share-point`` finds every backbone tensor. The checkpoint is written
    after every epoch (``cfg.resume`` continues it). Also writes ``OUT/pretrain_history.json``.
    ``kwargs`` go to :func:`pretrain`. Returns the checkpoint path.
    """
    seed_everything(cfg.seed)
    if data is None:
        data = load_data(cfg)
    device = resolve_device(cfg.device)
    num_classes = max(1, data.num_train_identities)
    model = build_model_for(cfg, num_classes)
    size = image_size_for(cfg, data)

    def report(entry: dict[str, float]) -> None:
        if log is not None:
            log(
                f"mmgl epoch {int(entry['epoch'])}/{epochs}: loss {entry['loss']:.4f} "
                f"(global {entry['global_loss']:.4f}, local {entry['local_loss']:.4f}) "
                f"perm-acc {entry['perm_accuracy']:.3f} cycle {entry['cycle_fraction']:.3f} "
                f"{entry['seconds']:.1f}s"
            )

    out = Path(cfg.out)
    path = out / filename
    extra = {"model_name": cfg.model, "share_point": cfg.share_point, "num_classes": num_classes}
    kwargs.setdefault("num_workers", cfg.num_workers)
    result = pretrain(
        model, data, epochs, batch_size=batch_size, image_size=size, lr=lr, device=device, seed=cfg.seed,
        progress=progress, callback=report, checkpoint=path, resume=cfg.resume, extra_meta=extra,
        config=cfg.to_dict(), **kwargs,
    )
    write_json(out / "pretrain_history.json", {"meta": result.meta, "history": result.history})
    return path
