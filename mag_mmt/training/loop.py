"""The training loop: :func:`train` runs a :class:`~mag_mmt.training.TrainConfig`.

One step (docs/method.md describes each part)::

    batch (2PK images: P*K visible then P*K thermal, visible i ~ thermal i)
      -> device -> random horizontal flip -> MAG (ModalityAugment) -> normalise
      -> model(visible, thermal) -> (feat, logits)
      -> loss = id_weight * CE(logits, labels) + triplet_weight * triplet(feat, labels, modalities)

With ``augment="reid"`` (every ``--recipe``, docs/recipes.md) the flip/MAG/normalise part is
the batched :class:`~mag_mmt.transforms.CrossModalAugment`: pad + crop, flip, jitter, MAG,
normalise, channel-wise erasing and CAJ's channel operations, with ``visible_views`` visible
views per pair. With ``val`` set, ``eval_every`` scores a validation split (never the test set)
and keeps the best epoch as ``OUT/best.pt``.

**Epochs.** By default (``epoch_unit="images"``) an epoch is AGW's and CAJ's: one pass over
the larger modality's training images, shared by all ranks, i.e.
``ceil(max(n_visible, n_thermal) / (P * K * world_size))`` steps per rank. ``"identities"``
gives the shorter per-identity epoch (every identity once: ``ceil(C / (P * world_size))``
steps); ``steps_per_epoch`` overrides both.

**Checkpoints** (``OUT/last.pt``, :mod:`mag_mmt.training.checkpoints`) are written atomically
every ``checkpoint_every`` steps and at the end of every epoch; ``resume=True`` continues a
killed run and gives the same weights as a run that was never stopped. Resuming checks that the
run is the same: the configuration fields that shape training (all but
:data:`~mag_mmt.training.config.RESUME_MAY_CHANGE`), the number of classes and images, and the
number of processes; a difference is a :class:`~mag_mmt.errors.UserError` naming the fields.

**Logs**: ``OUT/history.csv`` and ``history.json`` (a row every ``log_every`` steps and one per
epoch), TensorBoard events in ``OUT/tensorboard/`` when tensorboard is installed, and
``OUT/curves.png`` at the end (:mod:`mag_mmt.runlog`, docs/logging.md); rank 0 writes them.

**Several processes** (``torchrun``): every rank draws its own MAG boxes and flips, from a
generator seeded with :func:`~mag_mmt.training.augment_seed` ``(seed, rank)``; rank 0 keeps
``seed + 1``, the single-process value.

Example::

    from mag_mmt.training import TrainConfig, train
    result = train(TrainConfig(data="synthetic", model="small-cnn", epochs=5, out="runs/demo"))
    print(result.history[-1])
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import load_checkpoint
from ..data.records import ReIDData, Sample
from ..schedule import scheduled_lr
from .checkpoints import check_resumable, check_same_run, restore_run_state, save_run_state, write_json
from .config import TrainConfig
from .evaluate import evaluate_model, evaluate_validation, model_from_checkpoint, split_validation
from .setup import (augment_seed, batch_loader, build_augment, build_model_for, build_optimizer, build_triplet,
                    dist_setup, image_size, load_data, load_init, normalize_images, param_groups, random_flip,
                    resolve_device, seed_everything)

__all__ = ["TrainResult", "train", "train_and_evaluate", "lr_at"]


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


def lr_at(cfg: TrainConfig, epoch: int, step_in_epoch: int, steps_per_epoch: int) -> float:
    """The learning rate of ``cfg`` at a step: :func:`~mag_mmt.schedule.scheduled_lr` with
    ``cfg.lr``, ``warmup_epochs``, ``warmup_mode`` and ``milestones``."""
    return scheduled_lr(cfg.lr, epoch, step_in_epoch, steps_per_epoch, warmup_epochs=cfg.warmup_epochs,
                        warmup_mode=cfg.warmup_mode, milestones=cfg.milestones)


def train(cfg: TrainConfig, data: ReIDData | None = None, log: Callable[[str], None] | None = print) -> TrainResult:
    """Train a model as ``cfg`` says; see the module docstring for the step.

    ``data`` may be passed to reuse already loaded data (the demo trains four arms on one
    synthetic set). Returns a :class:`TrainResult`; the last checkpoint is ``OUT/last.pt``.
    """
    from ..augment import ModalityAugment
    from ..data.images import ImageDataset
    from ..data.sampler import CrossModalityIdentitySampler

    cfg.validate()
    log = log or (lambda _msg: None)
    rank, world, local_rank = dist_setup()
    if rank != 0:
        log = lambda _msg: None  # noqa: E731  (one process reports)
    device = resolve_device(cfg.device, local_rank=local_rank if world > 1 else None)
    if world > 1 and device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL collectives (the RNG-state gather) use the current device
    out = Path(cfg.out)
    ckpt_path = out / "last.pt"
    state: dict[str, Any] | None = None
    if cfg.resume and ckpt_path.exists():  # read and checked before any data is loaded
        state = load_checkpoint(ckpt_path, map_location="cpu", kind="train")
        check_resumable(ckpt_path, state, cfg)
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
        check_same_run(ckpt_path, state, num_classes=num_classes, num_train_images=num_train_images,
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
    optimizer = build_optimizer(cfg.optimizer, param_groups(cfg, model), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
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
        restore_run_state(state, model=model, optimizer=optimizer, scaler=scaler, generator=aug_gen, rank=rank)
        if cfg.memory_size:  # the queue, so the resumed steps mine among the same rows
            criterion.load_state_dict(state["memory"])
        start_epoch, start_step, global_step = state["epoch"], state["step_in_epoch"], state["step"]
        history = list(state.get("history", []))
        selection = state.get("selection")
        log(f"resumed from {ckpt_path} at epoch {start_epoch}, step {start_step}")
        del state
    from ..runlog import RunLog

    runlog = RunLog(out, start_step=global_step, every=cfg.log_every, enabled=rank == 0)  # rows after it dropped

    train_model: nn.Module = model
    if world > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if device.type == "cuda" else None
        )

    def save(epoch: int, step_in_epoch: int, best: bool = False) -> None:
        runlog.flush()  # a resumed run continues history.csv from this step
        save_run_state(  # every rank takes part (the random states); rank 0 writes
            ckpt_path, "train", model=model, optimizer=optimizer, scaler=scaler, generator=aug_gen, rank=rank,
            world_size=world, copies=[best_path] if best else [],
            epoch=epoch, step_in_epoch=step_in_epoch, step=global_step, history=history, config=cfg.to_dict(),
            num_classes=num_classes, num_train_images=num_train_images, image_size=list(size), selection=selection,
            **({"memory": criterion.state_dict()} if cfg.memory_size else {}),
        )

    stopped = False
    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        first = start_step if epoch == start_epoch else 0  # a resumed epoch skips the batches already run
        batches = list(sampler)[first:]
        loader = batch_loader(dataset, batches, device, cfg.num_workers)
        sums = torch.zeros(3, device=device)  # total, id, triplet (no per-step host sync)
        done, seen, t0 = 0, 0, time.perf_counter()
        bar = _progress(cfg, rank, steps_per_epoch, first, f"epoch {epoch + 1}/{cfg.epochs}")
        for i, (images, labels, modalities, _cams) in enumerate(loader, start=first):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(cfg, epoch, i, steps_per_epoch) * group.get("lr_mult", 1.0)
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


# --------------------------------------------------------------------------- mag-mmt train


def train_and_evaluate(cfg: TrainConfig, resume_hint: Callable[[int], str] | None = None,
                       log: Callable[[str], None] = print) -> TrainResult:
    """What ``mag-mmt train`` runs: :func:`train`, then (unless ``max_steps`` stopped it) the test
    protocol on the final model, written into ``OUT/history.*``, and on ``OUT/best.pt`` when a
    validation split chose one (added to ``history.json`` under ``"selected"``).

    ``resume_hint(world_size)`` is the command that continues a run stopped by ``max_steps``.
    Rank 0 reports; returns :func:`train`'s result.
    """
    result = train(cfg)
    size = image_size(cfg, result.data)
    rank, world, _ = dist_setup()
    if rank != 0:
        return result
    if result.stopped_early:
        log(f"stopped after {cfg.max_steps} steps (--max-steps); checkpoint: {result.checkpoint}"
            + (f"\nresume with: {resume_hint(world)}" if resume_hint is not None else ""))
        return result
    metrics = evaluate_model(result.model, result.data, size, trials=cfg.eval_trials)
    log(f"final: rank-1 {100 * metrics['rank1']:.2f}%  mAP {100 * metrics['mAP']:.2f}%  "
        f"mINP {100 * metrics['mINP']:.2f}%  ({metrics['setting']})")
    from ..runlog import RunLog

    runlog = RunLog.reopen(cfg.out)  # the final row joins history.csv/.json, TensorBoard and curves.png
    runlog.final(metrics)
    runlog.close()
    if result.best_checkpoint is not None:  # the checkpoint chosen on validation, tested once, at the end
        best, _, _ = model_from_checkpoint(str(result.best_checkpoint), next(result.model.parameters()).device)
        chosen = evaluate_model(best, result.data, size, trials=cfg.eval_trials)
        sel = result.selection or {}
        log(f"selected (epoch {sel.get('epoch')}, {sel.get('metric')} {100 * sel.get('value', 0):.2f}%): "
            f"rank-1 {100 * chosen['rank1']:.2f}%  mAP {100 * chosen['mAP']:.2f}%  mINP {100 * chosen['mINP']:.2f}%")
        report = json.loads((Path(cfg.out) / "history.json").read_text())
        report["selected"] = {**sel, "test": chosen, "checkpoint": str(result.best_checkpoint)}
        write_json(Path(cfg.out) / "history.json", report)
    return result
