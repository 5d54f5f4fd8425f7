"""The training log a person reads: ``history.csv``, ``history.json``, TensorBoard events and
``curves.png`` in the run folder (``mag-mmt train --out``). docs/logging.md describes the files.

:class:`RunLog` is what :func:`mag_mmt.training.train` writes through (on rank 0 only):

* a **step row** every ``every`` steps (and before each checkpoint and at the end of an epoch):
  the means over those steps of ``loss``, ``id_loss`` (cross-entropy), ``triplet_loss`` and, with
  the multi-masking triplet loss, its parts ``mman`` and ``mmap``; ``lr`` of the last step. The
  values are added up as device tensors and read once per row, so a step adds no host sync;
* an **epoch row** at the end of each epoch (the epoch means, wall time, images/s, and
  ``rank1``/``mAP``/``mINP`` when the epoch was evaluated);
* a **final row** with the evaluation after training (``mag-mmt train`` adds it, see
  :meth:`RunLog.reopen`).

``history.csv`` is appended to row by row (a killed run leaves every finished row);
``history.json`` (``{"rows": [...], "history": [the training loop's epoch records, with every field],
"final": {...}}``) is rewritten
at the end of each epoch and of the run. Resuming at step ``S`` keeps the rows up to ``S`` and
drops the rest (written after the checkpoint the run resumes from), so the resumed run
continues the same files without duplicate steps; TensorBoard is told the same with
``purge_step``. TensorBoard event files (``OUT/tensorboard/``, tags ``train/<column>`` and
``eval/<metric>``) are written when the ``tensorboard`` package is installed
(``pip install mag-mmt[tensorboard]``).

Example:
    >>> import tempfile, torch
    >>> from mag_mmt.runlog import RunLog, read_history
    >>> out = tempfile.mkdtemp()
    >>> log = RunLog(out, every=2, tensorboard=False)
    >>> for step in (1, 2, 3):
    ...     log.step(step, 1, 0.01, torch.tensor(2.0), torch.tensor(1.5), torch.tensor(0.5))
    >>> log.epoch(3, {"epoch": 1, "loss": 2.0, "id_loss": 1.5, "triplet_loss": 0.5})
    >>> log.close(plot=False)
    >>> [(r["kind"], r["step"], r["loss"]) for r in read_history(out)]
    [('step', 2, 2.0), ('step', 3, 2.0), ('epoch', 3, 2.0)]
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from .errors import UserError

__all__ = ["COLUMNS", "RunLog", "read_history"]

#: the columns of ``history.csv``, in order (a row leaves a cell empty when it has no value)
COLUMNS = ("kind", "step", "epoch", "loss", "id_loss", "triplet_loss", "mman", "mmap", "lr",
           "rank1", "mAP", "mINP", "seconds", "images_per_s")
_STEP_TERMS = ("loss", "id_loss", "triplet_loss", "mman", "mmap")
_EVAL = ("rank1", "mAP", "mINP")
_INTS = ("step", "epoch")


def _tb_writer(folder: Path, purge_step: int) -> Any:
    """A TensorBoard ``SummaryWriter`` on ``folder``, or ``None`` without the tensorboard package."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # the optional extra is not installed: CSV/JSON only
        return None
    return SummaryWriter(log_dir=str(folder), purge_step=purge_step, flush_secs=30)


class RunLog:
    """Write a training run's history to ``out`` (see the module docstring for the files).

    ``start_step``: the step the run starts after (0 for a new run, the checkpoint's step when
    resuming): rows of ``out/history.csv`` with a larger step are dropped, the others kept.
    ``every``: steps per step row. ``enabled=False`` (ranks other than 0) makes every method
    a no-op. ``tensorboard=False`` skips the event files even when tensorboard is installed.
    """

    def __init__(self, out: str | os.PathLike[str], start_step: int = 0, every: int = 10, *,
                 enabled: bool = True, tensorboard: bool = True) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.enabled = enabled
        self.every = int(every)
        self.out = Path(out)
        self.csv_path, self.json_path = self.out / "history.csv", self.out / "history.json"
        self.rows: list[dict[str, Any]] = []
        self._sum: torch.Tensor | None = None
        self._count = 0
        self._last: tuple[int, int, float] = (0, 0, 0.0)  # step, epoch, lr of the last step added
        self._writer = None
        self._final: dict[str, Any] | None = None
        self._history: list[dict[str, Any]] = []  # the training loop's full epoch records (JSON "history")
        if not enabled:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        if start_step > 0 and (self.csv_path.exists() or self.json_path.exists()):
            self.rows = [r for r in read_history(self.out) if int(r.get("step", 0)) <= start_step]
            last_epoch = max((r.get("epoch", 0) for r in self.rows if r["kind"] == "epoch"), default=0)
            self._history = [h for h in _json_history(self.json_path) if h.get("epoch", 0) <= last_epoch]
        self._write_csv(self.rows)  # a new file, or the kept rows
        if tensorboard:
            self._writer = _tb_writer(self.out / "tensorboard", purge_step=start_step + 1)

    @classmethod
    def reopen(cls, out: str | os.PathLike[str], *, tensorboard: bool = True) -> "RunLog":
        """The log of a finished run, to add rows after its last step (e.g. :meth:`final`)."""
        steps = [int(r["step"]) for r in read_history(out) if "step" in r]
        return cls(out, start_step=max(steps, default=0), tensorboard=tensorboard)

    # ------------------------------------------------------------------ rows

    def step(self, step: int, epoch: int, lr: float, loss: torch.Tensor, id_loss: torch.Tensor,
             triplet_loss: torch.Tensor, parts: Any = None) -> None:
        """Add one training step (0-d loss tensors; ``parts``: the MMT loss's ``last_parts``,
        or ``None``). Writes a step row every ``every`` steps; reads the device once per row."""
        if not self.enabled:
            return
        terms = [loss, id_loss, triplet_loss]
        if parts is not None:
            terms += [parts.mman, parts.mmap]
        values = torch.stack([t.detach().float().reshape(()) for t in terms])
        self._sum = values if self._sum is None else self._sum + values
        self._count += 1
        self._last = (int(step), int(epoch), float(lr))
        if step % self.every == 0:
            self.flush()

    def flush(self) -> None:
        """Write the steps added since the last row as one step row (nothing if none)."""
        if not self.enabled or self._count == 0 or self._sum is None:
            return
        means = (self._sum / self._count).tolist()  # the one host read per row
        step, epoch, lr = self._last
        row: dict[str, Any] = {"kind": "step", "step": step, "epoch": epoch}
        row.update(zip(_STEP_TERMS, means))
        row["lr"] = lr
        self._sum, self._count = None, 0
        self._add(row)

    def epoch(self, step: int, values: Mapping[str, Any]) -> None:
        """Write an epoch row: ``values`` is the training loop's epoch record (``epoch``, ``loss``,
        ``id_loss``, ``triplet_loss``, ``seconds``, ``images_per_s``, evaluation metrics)."""
        if not self.enabled:
            return
        self.flush()
        self._add({"kind": "epoch", "step": int(step), **_known(values)})
        self._history.append(dict(values))
        self._write_json()

    def final(self, metrics: Mapping[str, Any]) -> None:
        """Write the evaluation after training as a ``final`` row at the last step."""
        if not self.enabled:
            return
        self.flush()
        last = self.rows[-1] if self.rows else {}
        self._add({"kind": "final", "step": int(last.get("step", 0)), "epoch": last.get("epoch", 0),
                   **{k: metrics[k] for k in _EVAL if k in metrics}})
        self._final = dict(metrics)

    def close(self, plot: bool = True) -> None:
        """Write what is pending, ``history.json`` and (``plot``) ``curves.png``; close TensorBoard."""
        if not self.enabled:
            return
        self.flush()
        self._write_json()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if plot and self.rows:
            from .visualize import plot_training_curves

            plot_training_curves(self.rows, self.out / "curves.png")

    # ------------------------------------------------------------------ files

    def _add(self, row: dict[str, Any]) -> None:
        row = {k: _round(row[k]) for k in COLUMNS if k in row and row[k] is not None}
        self.rows.append(row)
        with open(self.csv_path, "a", newline="") as f:
            csv.DictWriter(f, COLUMNS).writerow(row)
        if self._writer is not None:
            group = "train" if row["kind"] == "step" else "eval"
            for key in (_STEP_TERMS + ("lr",) if group == "train" else _EVAL):
                if key in row:
                    self._writer.add_scalar(f"{group}/{key}", float(row[key]), row["step"])

    def _write_csv(self, rows: Sequence[Mapping[str, Any]]) -> None:
        tmp = self.csv_path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.csv_path)

    def _write_json(self) -> None:
        payload: dict[str, Any] = {"rows": self.rows,
                                   "history": self._history}
        final = self._final or next(
            ({k: r[k] for k in _EVAL if k in r} for r in reversed(self.rows) if r["kind"] == "final"), None)
        if final is not None:
            payload["final"] = final
        from .training import write_json

        write_json(self.json_path, payload)


def _json_history(path: Path) -> list[dict[str, Any]]:
    """The ``"history"`` entry of a ``history.json`` (``[]`` when absent or unreadable)."""
    try:
        payload = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    history = payload.get("history") if isinstance(payload, dict) else None
    return [h for h in history if isinstance(h, dict)] if isinstance(history, list) else []


def _round(value: Any) -> Any:
    """Floats to 7 significant digits (what float32 losses hold; readable in the CSV)."""
    return float(f"{value:.7g}") if isinstance(value, float) else value


def _known(values: Mapping[str, Any]) -> dict[str, Any]:
    """The CSV columns of ``values`` (numbers only; a list such as ``cmc`` is left out)."""
    return {k: values[k] for k in COLUMNS[1:] if isinstance(values.get(k), (int, float))}


def _parse(value: str, key: str, where: str) -> Any:
    if key == "kind":
        return value
    try:
        number = float(value)
    except ValueError:
        raise UserError(f"{where}: column {key!r} holds {value!r}, not a number") from None
    return int(number) if key in _INTS and number.is_integer() else number


def read_history(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of a run folder's ``history.csv`` (else ``history.json``), as dicts of the
    cells they have (numbers as ``int``/``float``). ``UserError`` names the folder when it holds
    no history, or the file and line of a malformed cell. Also reads the ``history.json`` of
    runs older than ``history.csv`` (``{"history": [epoch rows], "final": {...}}``).
    """
    folder = Path(run_dir)
    csv_path, json_path = folder / "history.csv", folder / "history.json"
    if csv_path.is_file():
        rows = []
        with open(csv_path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or "step" not in reader.fieldnames:
                raise UserError(f"{csv_path}: not a mag-mmt history (no header with a 'step' column)")
            for line, raw in enumerate(reader, start=2):
                where = f"{csv_path}, line {line}"
                if None in raw or any(v is None for v in raw.values()):
                    raise UserError(f"{where}: {len(reader.fieldnames)} cells expected")
                rows.append({k: _parse(v, k, where) for k, v in raw.items() if v != ""})
        return rows
    if json_path.is_file():
        try:
            payload = json.loads(json_path.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{json_path}: not valid JSON ({exc})") from None
        if isinstance(payload, dict) and "rows" in payload:
            return list(payload["rows"])
        if isinstance(payload, dict) and "history" in payload:  # a run written before history.csv existed
            rows = [{"kind": "epoch", **_known(r)} for r in payload["history"]]
            if isinstance(payload.get("final"), dict) and rows:
                rows.append({"kind": "final", "epoch": rows[-1].get("epoch", 0), **_known(payload["final"])})
            return rows
        raise UserError(f"{json_path}: not a mag-mmt history (no 'rows' or 'history' entry)")
    raise UserError(f"{folder} holds no history.csv or history.json: is it the --out folder of `mag-mmt train`?")


def plot_run(run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> tuple[Path, int]:
    """What ``mag-mmt plot`` runs: draw a run folder's curves (:func:`read_history`) to ``out``
    (default ``RUN_DIR/curves.png``). Returns the path and the number of rows; ``UserError``
    names the folder when it is missing or holds nothing to draw."""
    from .visualize import plot_training_curves

    if not Path(run_dir).is_dir():
        raise UserError(f"RUN_DIR {str(run_dir)!r} is not a folder")
    rows = read_history(run_dir)  # UserError naming the folder, file or line
    try:
        path = plot_training_curves(rows, out or Path(run_dir) / "curves.png")
    except ValueError as exc:  # nothing to draw
        raise UserError(f"{run_dir}: {exc}") from None
    return path, len(rows)

