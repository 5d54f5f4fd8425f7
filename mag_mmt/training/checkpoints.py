"""Resumable run state: what ``OUT/last.pt`` holds, how it is written, checked and restored.

A run checkpoint (:func:`save_run_state`, format :mod:`mag_mmt.checkpoint`) holds the model,
the optimiser, the gradient scaler, every rank's random states (:func:`gather_rng_states`,
the augmentation generator included) and the loop's own fields (epoch, step, history, config,
...). :func:`check_resumable` and :func:`check_same_run` refuse to resume another run with a
:class:`~mag_mmt.errors.UserError` naming what differs; :func:`restore_run_state` puts the
state back. The training loop and MMGL pre-training both write through here.

>>> import tempfile, torch
>>> from mag_mmt.checkpoint import load_checkpoint
>>> model = torch.nn.Linear(2, 2); opt = torch.optim.SGD(model.parameters(), lr=0.1)
>>> gen = torch.Generator().manual_seed(1)
>>> path = tempfile.mkdtemp() + "/last.pt"
>>> save_run_state(path, "train", model=model, optimizer=opt, generator=gen, epoch=1, step=4)
>>> state = load_checkpoint(path, kind="train")
>>> restore_run_state(state, model=model, optimizer=opt, generator=gen); state["step"]
4
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..checkpoint import rng_state, save_checkpoint, set_rng_state
from ..errors import UserError
from .config import TrainConfig, config_differences

__all__ = ["gather_rng_states", "save_run_state", "restore_run_state", "check_resumable", "check_same_run",
           "write_json"]


def gather_rng_states(aug_gen: torch.Generator | None) -> list[dict[str, Any]]:
    """Every rank's :func:`~mag_mmt.checkpoint.rng_state` in rank order (a collective under DDP)."""
    state = rng_state(aug_gen)
    from ..distributed import is_distributed

    if not is_distributed():
        return [state]
    import torch.distributed as dist

    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, state)
    return states


def check_resumable(path: Path, state: dict[str, Any], cfg: TrainConfig) -> None:
    """Raise :class:`UserError` if ``cfg`` is not the run that wrote ``state`` (config fields)."""
    diffs = config_differences(TrainConfig.from_dict(state["config"]), cfg)
    if diffs:
        raise UserError(
            f"cannot resume {path}: it was written by a run with another configuration ({'; '.join(diffs)}). "
            f"Resume with the same settings, or start a new run (another --out; --init {path} starts from its weights)"
        )


def check_same_run(path: Path, state: dict[str, Any], **now: Any) -> None:
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


def save_run_state(path: str | os.PathLike[str], kind: str, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                   generator: torch.Generator | None, scaler: Any = None, rank: int = 0, world_size: int = 1,
                   copies: Sequence[str | os.PathLike[str]] = (), **fields: Any) -> None:
    """Write a resumable checkpoint of ``kind`` to ``path`` (and each of ``copies``) on rank 0.

    Holds ``model`` / ``optimizer`` / ``scaler`` state dicts, ``rng`` (``{"world_size",
    "ranks"}``, gathered from every rank: a collective, so every rank calls this) and
    ``fields`` (plain data: epoch, step, history, config, ...).
    """
    rng = gather_rng_states(generator)
    if rank != 0:
        return
    payload = {
        "kind": kind,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "rng": {"world_size": world_size, "ranks": rng},
        **fields,
    }
    for target in (path, *copies):
        save_checkpoint(payload, target)


def restore_run_state(state: dict[str, Any], *, model: nn.Module, optimizer: torch.optim.Optimizer,
                      generator: torch.Generator | None, scaler: Any = None, rank: int = 0) -> None:
    """Load what :func:`save_run_state` wrote back into ``model``, ``optimizer``, ``scaler`` and
    this rank's random states (``generator`` included)."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scaler is not None and state.get("scaler"):  # empty without fp16 scaling (CPU, bf16): nothing to load
        scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"]["ranks"][rank], generator)


def write_json(path: str | os.PathLike[str], payload: Any) -> None:
    """Write ``payload`` as indented JSON to ``path`` atomically (a temporary file renamed over it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
