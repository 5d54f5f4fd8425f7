"""Checkpoints: written atomically, read with clear errors.

A checkpoint is a ``dict`` saved with :func:`torch.save`. It is first written to a temporary
file in the same folder and then renamed over the target, so a run killed mid-write never
leaves a half-written file under the real name. A file cut short anyway (copied partially,
disk full) is detected on load: :class:`CheckpointError` names the file.

Layout written by the trainer and by MMGL pre-training::

    {"format": "mag-mmt/1", "kind": "train" | "pretrain", "model": state_dict,
     "optimizer": ..., "epoch": int, "step": int, "rng": {...}, "config": {...}, ...}
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .errors import UserError

FORMAT = "mag-mmt/1"


class CheckpointError(UserError):
    """A checkpoint file is missing, truncated, corrupt or of the wrong kind."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, **state}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu", kind: str | None = None
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: the file does not exist, is truncated or corrupt, is not a mag-mmt
            checkpoint, or (when ``kind`` is given) is of another kind.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises RuntimeError / EOFError / UnpicklingError
        size = path.stat().st_size
        raise CheckpointError(
            f"checkpoint {str(path)!r} ({size} bytes) cannot be read: it is truncated or corrupt "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT or "model" not in state:
        raise CheckpointError(f"{str(path)!r} is not a mag-mmt checkpoint (format {FORMAT})")
    if kind is not None and state.get("kind") != kind:
        raise CheckpointError(f"{str(path)!r} is a {state.get('kind')!r} checkpoint, expected {kind!r}")
    return state
