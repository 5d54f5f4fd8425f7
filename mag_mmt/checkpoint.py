"""Checkpoints: plain data only, written atomically, read safely with clear errors.

A checkpoint is a ``dict`` saved with :func:`torch.save` that holds **only tensors and plain
Python types** (``dict``, ``list``, ``tuple``, ``str``, ``int``, ``float``, ``bool``,
``None``): model and optimiser state, configurations, histories, and every random state
(torch, CUDA, Python's ``random`` and numpy's, the latter as a tensor plus integers). So it
is read with ``torch.load(..., weights_only=True)``, which never runs code from the file: a
file that carries anything else (a pickled object whose ``__reduce__`` calls
``os.system``, say) is refused with :class:`CheckpointError` before any of it runs.

:func:`save_checkpoint` writes to a temporary file in the same folder and renames it over
the target, so a run killed mid-write never leaves a half-written file under the real name.
Numpy scalars and arrays are converted to Python numbers and tensors on the way; anything
else that is not plain data raises ``TypeError`` naming its key.

:func:`load_checkpoint` names the real cause of a failure: the file is missing, truncated,
not a mag-mmt checkpoint, of another kind (``"train"`` vs ``"pretrain"``), of the old format
``mag-mmt/1`` (which stored numpy objects that only load by running code; convert it with
:func:`convert_legacy_checkpoint` or ``mag-mmt convert-checkpoint``), or asked onto a device
this machine lacks. Tensors are always read onto the CPU first, so a file written on a GPU
loads on a machine without one; ``map_location`` then moves everything except the random
states, which stay CPU tensors whatever the device (``torch.set_rng_state`` and
``Generator.set_state`` take CPU byte tensors only).

Layout written by the trainer and by MMGL pre-training::

    {"format": "mag-mmt/2", "kind": "train" | "pretrain", "model": state_dict,
     "optimizer": ..., "epoch": int, "step": int,
     "rng": {"world_size": W, "ranks": [rng_state(rank 0), ..., rng_state(rank W-1)]},
     "config": {...}, "history": [...], ...}

Example:
    >>> import tempfile, torch
    >>> from mag_mmt.checkpoint import load_checkpoint, save_checkpoint
    >>> path = save_checkpoint({"kind": "train", "model": {"w": torch.ones(2)}},
    ...                        tempfile.mkdtemp() + "/last.pt")
    >>> state = load_checkpoint(path, kind="train")
    >>> state["format"], state["model"]["w"].tolist()
    ('mag-mmt/2', [1.0, 1.0])
"""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import re
import tempfile
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .device import device_available
from .errors import UserError

FORMAT = "mag-mmt/2"
LEGACY_FORMATS = ("mag-mmt/1",)
KINDS = {"train": "a training checkpoint (mag-mmt train)", "pretrain": "an MMGL pre-training checkpoint (mag-mmt pretrain)"}

__all__ = [
    "FORMAT", "CheckpointError", "save_checkpoint", "load_checkpoint", "convert_legacy_checkpoint",
    "rng_state", "set_rng_state",
]


class CheckpointError(UserError):
    """A checkpoint file is missing, truncated, unsafe, of an old format or of the wrong kind."""


# --------------------------------------------------------------------------- plain data


def _plain(obj: Any, where: str) -> Any:
    """``obj`` with numpy values turned into Python numbers / CPU-independent tensors.

    Raises ``TypeError`` naming ``where`` for anything ``torch.load(weights_only=True)``
    would refuse (or would need an allow-list for).
    """
    if isinstance(obj, np.generic):  # before float: np.float64 is a float subclass
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str, bytes, torch.Tensor, torch.Size, torch.dtype)):
        return obj
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError(f"checkpoint entry {where!r} is a numpy object array; store plain values")
        return torch.from_numpy(np.ascontiguousarray(obj).copy())
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, dict):  # OrderedDict (state dicts) keeps its type
        out = OrderedDict() if isinstance(obj, OrderedDict) else {}
        for key, value in obj.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"checkpoint entry {where!r} has a key of type {type(key).__name__}; use str or int")
            out[key] = _plain(value, f"{where}.{key}")
        if isinstance(obj, OrderedDict) and hasattr(obj, "_metadata"):
            out._metadata = obj._metadata  # type: ignore[attr-defined]  (module state-dict versions)
        return out
    if isinstance(obj, (list, tuple)):
        values = [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return values if isinstance(obj, list) else tuple(values)
    raise TypeError(
        f"checkpoint entry {where!r} is a {type(obj).__module__}.{type(obj).__qualname__}: a checkpoint holds "
        "only tensors and plain Python types (dict, list, tuple, str, int, float, bool, None)"
    )


def _tree_to(obj: Any, device: torch.device, skip: frozenset[str] = frozenset()) -> Any:
    """Every tensor of ``obj`` moved to ``device``; top-level keys in ``skip`` left as they are."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, OrderedDict) else {}
        for key, value in obj.items():
            out[key] = value if key in skip else _tree_to(value, device)
        if hasattr(obj, "_metadata"):
            out._metadata = obj._metadata  # type: ignore[attr-defined]
        return out
    if isinstance(obj, (list, tuple)):
        values = [_tree_to(v, device) for v in obj]
        return values if isinstance(obj, list) else tuple(values)
    return obj


# --------------------------------------------------------------------------- random states


def rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """This process's random states as plain data (CPU tensors and Python numbers).

    Holds torch's CPU state, every CUDA device's state (when CUDA is available), Python's
    ``random`` and numpy's global state, and ``generator``'s state under ``"augment"``
    (the MAG / flip generator of the trainer). All tensors are CPU ``uint8``/``int64``.

    >>> import random, torch
    >>> from mag_mmt.checkpoint import rng_state, set_rng_state
    >>> state = rng_state(); a = (random.random(), torch.rand(1))
    >>> set_rng_state(state); a == (random.random(), torch.rand(1))
    True
    """
    return _rng_dict(random.getstate(), np.random.get_state(), torch.get_rng_state(),
                     torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                     generator.get_state() if generator is not None else None)


def _rng_dict(python: tuple, numpy_state: tuple, torch_state: torch.Tensor, cuda: list[torch.Tensor] | None,
              augment: torch.Tensor | None) -> dict[str, Any]:
    """The plain layout of :func:`rng_state` from the getters' own return values."""
    version, internal, gauss = python
    name, keys, pos, has_gauss, cached = numpy_state
    state: dict[str, Any] = {
        "python": {"version": int(version), "internal": [int(v) for v in internal], "gauss_next": gauss},
        "numpy": {"bit_generator": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch_state.cpu(),
    }
    if cuda is not None:
        state["cuda"] = [s.cpu() for s in cuda]
    if augment is not None:
        state["augment"] = augment.cpu()
    return state


def _cpu_bytes(t: torch.Tensor, what: str) -> torch.Tensor:
    if t.device.type == "meta":
        raise CheckpointError(f"random state {what!r} has no data (a 'meta' tensor); load the checkpoint again")
    return t.detach().to("cpu", torch.uint8)


def set_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Restore what :func:`rng_state` returned (tensors on any device are brought to the CPU)."""
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss_next"]))
    npy = state["numpy"]
    keys = npy["keys"].cpu().numpy().astype(np.uint32) if isinstance(npy["keys"], torch.Tensor) else np.asarray(npy["keys"], dtype=np.uint32)
    np.random.set_state((npy["bit_generator"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(_cpu_bytes(state["torch"], "torch"))
    if "cuda" in state and torch.cuda.is_available():
        cuda = [_cpu_bytes(s, "cuda") for s in state["cuda"]]
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    if generator is not None and "augment" in state:
        saved = _cpu_bytes(state["augment"], "augment")
        if saved.numel() == generator.get_state().numel():
            generator.set_state(saved)
        else:  # a CPU generator's state resumed on CUDA, or the reverse: different generators
            warnings.warn(
                f"the checkpoint's augmentation generator state ({saved.numel()} bytes) is for another device "
                f"type than this run's {generator.device.type} generator: it keeps its fresh seed, so the resumed "
                f"run draws other boxes and flips than an uninterrupted one would", stacklevel=2)


# --------------------------------------------------------------------------- save / load


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` (plain data, see the module docstring) to ``path`` atomically.

    A temporary file in the same folder is written, flushed to disk and renamed over
    ``path``. Adds ``"format": "mag-mmt/2"``. Raises ``TypeError`` naming an entry that is
    not plain data (it could not be loaded safely).
    """
    path = Path(path)
    state = _plain({"format": FORMAT, **state}, "checkpoint")
    path.parent.mkdir(parents=True, exist_ok=True)
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


def _pickle_bytes(path: Path) -> bytes:
    """The raw pickle of a ``torch.save`` file (zip member ``*/data.pkl``, or the whole legacy
    file), read as bytes: nothing is unpickled."""
    try:
        with zipfile.ZipFile(path) as zf:
            name = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
            return zf.read(name) if name else b""
    except (zipfile.BadZipFile, OSError, KeyError):
        return path.read_bytes()


def _convert_hint(path: Path) -> str:
    return (f"convert it once with `mag-mmt convert-checkpoint {path} NEW.pt` "
            f"(Python: mag_mmt.checkpoint.convert_legacy_checkpoint({str(path)!r}, 'NEW.pt'))")


def _unsafe_error(path: Path, exc: Exception) -> CheckpointError:
    """The error for a file that ``weights_only=True`` refuses: old format, or unsafe content."""
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    what = f" ({found.group(1)})" if found else ""
    if not found:  # no object named: a foreign or damaged pickle stream (an unsupported opcode)
        detail = re.search(r"WeightsUnpickler error: \s*(.+)", str(exc))
        return CheckpointError(
            f"refused to load {str(path)!r}: it is not a file written by torch.save, or it is corrupt, or it uses "
            f"pickle instructions that can run code ({detail.group(1).strip() if detail else 'unsupported content'}); "
            "nothing from it was executed"
        )
    raw = _pickle_bytes(path)
    old = next((f for f in LEGACY_FORMATS if f.encode() in raw), None)
    if old is not None:
        return CheckpointError(
            f"checkpoint {str(path)!r} has the old format {old}, which stores objects{what} that torch's safe "
            f"loader (weights_only=True) does not read; this version reads {FORMAT} files, which hold tensors and plain data "
            f"only; {_convert_hint(path)}"
        )
    claims = " claims to be a mag-mmt checkpoint but" if FORMAT.encode() in raw else " is not a mag-mmt checkpoint and"
    return CheckpointError(
        f"refused to load {str(path)!r}: it{claims} holds an object{what} that would run code when loaded "
        f"(mag-mmt checkpoints hold tensors and plain Python types only); nothing from it was executed"
    )


def _read(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True`` onto the CPU, every failure named."""
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} is not a file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc):
            raise _unsafe_error(path, exc) from None
        raise _corrupt(path, exc) from exc
    except Exception as exc:  # RuntimeError (zip), EOFError, KeyError (not a torch file) ...
        raise _corrupt(path, exc) from exc


def _corrupt(path: Path, exc: Exception) -> CheckpointError:
    size = path.stat().st_size
    if zipfile.is_zipfile(path) or size == 0:
        why = "it is truncated or corrupt"
    else:
        why = "it is truncated or corrupt, or not a file written by torch.save"
    return CheckpointError(f"checkpoint {str(path)!r} ({size} bytes) cannot be read: {why} "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")


def _check_device(path: Path, map_location: Any) -> torch.device | None:
    if map_location is None:
        return None
    try:
        device = torch.device(map_location)
    except (TypeError, RuntimeError) as exc:
        raise CheckpointError(f"cannot load {str(path)!r}: map_location {map_location!r} is not a device") from exc
    if not device_available(device):
        raise CheckpointError(
            f"device mismatch loading {str(path)!r}: asked for {str(device)!r}, but CUDA is not available on this "
            "machine; load with map_location='cpu' (--device cpu): files written on a GPU load on a CPU"
        )
    return device


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device | None = "cpu", kind: str | None = None
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, without running code from it.

    Tensors are read onto the CPU (a file written on a GPU loads anywhere) and then moved to
    ``map_location``, except ``state["rng"]``, which stays on the CPU.

    Raises:
        CheckpointError: the file does not exist or is truncated or corrupt; it holds anything
            but tensors and plain data (refused unread: nothing from it runs); it has the old
            ``mag-mmt/1`` format (the message says how to convert it) or a newer one; it is
            not a mag-mmt checkpoint; ``kind`` is given and the file is of another kind; or
            ``map_location`` names a device this machine lacks.
    """
    path = Path(path)
    device = _check_device(path, map_location)
    state = _read(path)
    fmt = state.get("format") if isinstance(state, dict) else None
    if fmt in LEGACY_FORMATS:
        raise CheckpointError(f"checkpoint {str(path)!r} has the old format {fmt}; this version reads {FORMAT}: "
                              f"{_convert_hint(path)}")
    if isinstance(fmt, str) and fmt.startswith("mag-mmt/") and fmt != FORMAT:
        raise CheckpointError(f"checkpoint {str(path)!r} has format {fmt}, written by another version of mag-mmt; "
                              f"this version reads {FORMAT}")
    if fmt != FORMAT or "model" not in state:
        raise CheckpointError(f"{str(path)!r} is not a mag-mmt checkpoint (format {FORMAT})")
    if kind is not None and state.get("kind") != kind:
        have = KINDS.get(state.get("kind"), f"a {state.get('kind')!r} checkpoint")
        hint = f" (start training from it with `mag-mmt train --init {path}`)" if state.get("kind") == "pretrain" else ""
        raise CheckpointError(f"{str(path)!r} is {have}, expected {KINDS.get(kind, repr(kind))}{hint}")
    if device is not None and device.type != "cpu":
        state = _tree_to(state, device, skip=frozenset({"rng"}))
    return state


# --------------------------------------------------------------------------- old files


def _numpy_globals() -> list[Any]:
    """What rebuilding numpy arrays and scalars of numbers needs (nothing that runs other code)."""
    core = np._core if hasattr(np, "_core") else np.core  # numpy 2 / numpy 1
    rebuild = [core.multiarray._reconstruct, core.multiarray.scalar]
    names = [f"numpy.{mod}.multiarray.{fn.__name__}" for mod in ("core", "_core") for fn in rebuild]
    dtypes = [type(np.dtype(t)) for t in (np.bool_, np.uint8, np.uint32, np.int32, np.int64, np.float32, np.float64)]
    return [np.ndarray, np.dtype, *dtypes, *rebuild, *((fn, name) for fn in rebuild for name in names if name.endswith(fn.__name__))]


def convert_legacy_checkpoint(src: str | os.PathLike[str], dst: str | os.PathLike[str], *,
                              trust_source: bool = False) -> Path:
    """Rewrite a ``mag-mmt/1`` checkpoint ``src`` as a ``mag-mmt/2`` file ``dst`` (safe to load).

    Old files stored numpy's random state as a numpy array. The converter first reads ``src``
    with ``weights_only=True``, allowing numpy's array reconstruction for this one read (it
    builds arrays of numbers and runs nothing else). A file that needs more than that (any
    other object) is read only when ``trust_source=True``, which runs whatever code the file
    carries, after a warning: pass it only for files you made yourself or fully trust.
    The random state becomes plain data; the rest is copied. Old files hold one process's
    random state (rank 0's) and counted epochs in identities: resume them with one process and
    ``epoch_unit="identities"`` (``--epoch-unit identities``), or start from their weights
    with ``--init``.

    Raises:
        CheckpointError: ``src`` is missing or corrupt, is not a ``mag-mmt/1`` file, or holds
            other objects and ``trust_source`` is false.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise CheckpointError(f"checkpoint {str(src)!r} does not exist")
    try:
        allow = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
        with allow(_numpy_globals()) if allow is not None else contextlib.nullcontext():
            state = torch.load(src, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():
            raise _corrupt(src, exc) from exc
        if not trust_source:
            found = re.search(r"GLOBAL ([\w.]+)", str(exc))
            raise CheckpointError(
                f"{str(src)!r} holds objects{' (' + found.group(1) + ')' if found else ''} that load only by running "
                "code from the file; if you made it yourself or fully trust its source, convert it with "
                "--trust-source (Python: trust_source=True). Nothing from it was executed."
            ) from None
        warnings.warn(f"loading {str(src)!r} with weights_only=False: this runs any code the file carries",
                      UserWarning, stacklevel=2)
        state = torch.load(src, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise _corrupt(src, exc) from exc
    fmt = state.get("format") if isinstance(state, dict) else None
    if fmt == FORMAT:
        raise CheckpointError(f"{str(src)!r} already has format {FORMAT}; nothing to convert")
    if fmt not in LEGACY_FORMATS:
        raise CheckpointError(f"{str(src)!r} is not a mag-mmt checkpoint of an older format ({', '.join(LEGACY_FORMATS)})")
    state = dict(state)
    del state["format"]
    if isinstance(state.get("rng"), dict) and "python" in state["rng"]:  # one process's state (rank 0's)
        old = state["rng"]
        state["rng"] = {"world_size": 1, "ranks": [_rng_dict(old["python"], old["numpy"], old["torch"], old.get("cuda"),
                                                            old.get("augment"))]}
    if state.get("kind") == "train" and isinstance(state.get("config"), dict):
        state["config"] = {"epoch_unit": "identities", **state["config"]}  # mag-mmt/1 epochs counted identities
    return save_checkpoint(state, dst)
