"""``mag-mmt ablation``: train a list of arms under identical conditions, over seeds, and
compare them with paired statistics.

Every arm is the same :class:`~mag_mmt.training.TrainConfig` (data, model, seeds, batches,
budget: the *base*) with a few fields changed. The default arms are the paper's Table 2 and
the baselines users run:

============  ================================================  =====
arm           loss                                              MAG
============  ================================================  =====
``B``         identity CE only (``loss="none"``)                off
``+MAG``      identity CE                                       on
``+MMTN``     CE + MMT, MMAN only (``pos_weight=0``)            off
``+MMTP``     CE + MMT, MMAP only (``mman_weight=0``)           off
``+MMT``      CE + MMT, both terms (the base's weights)         off
``+MAG+MMT``  CE + MMT, both terms                              on
``CE+BH``     CE + batch-hard triplet                           off
``CE+WRT``    CE + AGW's weighted-regularised triplet           off
============  ================================================  =====

Arms offered on request (``--arms``) but not run by default (:data:`EXTRA_ARMS`):

============  ================================================  =====
``+MMT+mem``  ``+MMT`` with a cross-modality memory              off
              (:mod:`mag_mmt.memory`) of :data:`MEMORY_BATCHES`
              global batches (``4 x 2PK x ranks``; 3PK per rank
              with two visible views)
============  ================================================  =====

An arm's field may be a function ``(base, world_size) -> value``, resolved once before any run
(``+MMT+mem`` sizes its memory so); results record the resolved value.

For each seed (and each RegDB split with ``regdb_trials``) every arm trains on the same data
with the same sampler seed (hence the same batches), the same initial weights and the same
number of steps, then is evaluated with its dataset's protocol (SYSU-MM01 rules for SYSU and
synthetic data, RegDB's for RegDB, the cross-modality protocol for manifests). Written to
``OUT``:

* ``runs/<arm>/seed<s>[/trial<t>]/``: the trainer's checkpoint (``last.pt``), the resolved
  ``config.json`` and, once finished, ``result.json``. A finished run is skipped when the
  command is run again; an interrupted one resumes from its checkpoint (``resume=True``).
* ``results.json``: per arm and seed rank-1/5/10/20, mAP, mINP (fractions), the CMC, the
  training curve (per-epoch rows), wall seconds; per arm mean and 95 % t-interval; the
  paired comparisons.
* ``results.md``: the table (mean [95 % interval] per arm) and the paired differences that
  answer the ablation's questions: each arm against ``B``, ``+MAG+MMT`` against ``+MMT`` and
  ``+MAG``, ``+MMT`` against ``CE+BH``; per-seed values, mean, t interval, paired t-test p.
* ``cmc.png`` (mean over seeds), ``training_curves.png`` (mean over seeds), ``table.png``,
  ``comparisons.png``.

Example (seconds on a CPU)::

    from mag_mmt.ablation import run_ablation
    from mag_mmt.training import TrainConfig
    base = TrainConfig(data="synthetic", synthetic_kwargs={"num_identities": 12}, epochs=1,
                       steps_per_epoch=2, num_identities=2, num_instances=2, eval_trials=2)
    payload = run_ablation(base, {"B": {"loss": "none"}, "+MMT": {"loss": "mmt"}}, seeds=[0, 1],
                           out="runs/ablation-smoke")
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from . import training
from .errors import UserError
from .stats import paired_t_test, t_interval

__all__ = ["BENCH_BASE", "bench_base", "DEFAULT_ARMS", "EXTRA_ARMS", "MEMORY_BATCHES", "METRICS", "run_ablation", "select_arms", "resolve_arms",
           "parse_int_list", "plan_runs",
           "comparisons_for", "format_markdown"]

DEFAULT_ARMS: dict[str, dict[str, Any]] = {
    "B": {"loss": "none", "mag": False},
    "+MAG": {"loss": "none", "mag": True},
    "+MMTN": {"loss": "mmt", "mag": False, "pos_weight": 0.0},
    "+MMTP": {"loss": "mmt", "mag": False, "mman_weight": 0.0},
    "+MMT": {"loss": "mmt", "mag": False},
    "+MAG+MMT": {"loss": "mmt", "mag": True},
    "CE+BH": {"loss": "batch-hard", "mag": False},
    "CE+WRT": {"loss": "wrt", "mag": False},
}

#: global batches the ``+MMT+mem`` arm's memory holds
MEMORY_BATCHES = 4


def _memory_of_batches(base: training.TrainConfig, world_size: int) -> int:
    return MEMORY_BATCHES * (base.visible_views + 1) * base.num_identities * base.num_instances * world_size


#: arms ``--arms`` may name besides the defaults (not run unless named)
EXTRA_ARMS: dict[str, dict[str, Any]] = {
    "+MMT+mem": {"loss": "mmt", "mag": False, "memory_size": _memory_of_batches},
}

#: headline metrics stored per run (fractions in [0, 1])
METRICS = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")
_LABELS = {"rank1": "Rank-1", "rank5": "Rank-5", "rank10": "Rank-10", "rank20": "Rank-20", "mAP": "mAP",
           "mINP": "mINP"}

#: fields an arm may not change: they fix the data, the batches, the budget and the run itself
FIXED_FIELDS = frozenset({
    "data", "root", "synthetic_preset", "synthetic_kwargs", "regdb_trial", "img_size", "num_identities",
    "num_instances", "epochs", "epoch_unit", "steps_per_epoch", "max_steps", "seed", "out", "resume", "progress",
    "device", "num_workers", "checkpoint_every", "eval_trials",
})
#: fields that may change between invocations of the same ablation (how it runs, not what)
_RUN_CONTROL = ("out", "resume", "progress", "device", "num_workers", "checkpoint_every", "max_steps")

_PROTOCOL = {"regdb": "regdb", "manifest": "npu"}  # what each reader sets as data.protocol; else "sysu"
_PROTOCOL_TEXT = {
    "sysu": "SYSU-MM01 rules: thermal query -> visible gallery, all-search, single-shot",
    "regdb": "RegDB: visible query -> thermal gallery",
    "npu": "cross-modality (manifest): all-search, single-shot",
}


# --------------------------------------------------------------------------- arms and runs


def parse_int_list(text: str, name: str = "list") -> list[int]:
    """``"0,1,2"``, ``"1-10"``, ``"0-2,7"`` -> ints in order, without repeats (``UserError``
    naming ``name`` otherwise).

    >>> parse_int_list("1-3,7")
    [1, 2, 3, 7]
    """
    values: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise UserError(f"{name}: expected numbers like '0,1,2' or '1-10', got {text!r}")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise UserError(f"{name}: range {part!r} runs backwards")
        values.extend(range(lo, hi + 1))
    if len(set(values)) != len(values):
        raise UserError(f"{name}: {text!r} names a value twice")
    return values


def select_arms(names: Sequence[str] | str | None) -> dict[str, dict[str, Any]]:
    """The arms named (comma-separated string or list; default or :data:`EXTRA_ARMS`), in the
    order given; all default arms when ``None``. Unknown names raise :class:`UserError` listing
    the valid ones.

    >>> list(select_arms("B,+MMT,+MMT+mem"))
    ['B', '+MMT', '+MMT+mem']
    """
    if names is None:
        return {k: dict(v) for k, v in DEFAULT_ARMS.items()}
    known = {**DEFAULT_ARMS, **EXTRA_ARMS}
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise UserError(f"unknown arm(s) {unknown or names!r}; choose from {', '.join(known)}")
    if len(set(names)) != len(names):
        raise UserError(f"--arms names an arm twice: {list(names)}")
    return {n: dict(known[n]) for n in names}


def resolve_arms(base: training.TrainConfig, arms: dict[str, dict[str, Any]],
                 world_size: int = 1) -> dict[str, dict[str, Any]]:
    """``arms`` with every callable field value replaced by ``value(base, world_size)``.

    >>> resolve_arms(training.TrainConfig(num_identities=2, num_instances=2), select_arms("+MMT+mem"))
    {'+MMT+mem': {'loss': 'mmt', 'mag': False, 'memory_size': 32}}
    """
    return {name: {k: v(base, world_size) if callable(v) else v for k, v in fields.items()}
            for name, fields in arms.items()}


def _slug(name: str) -> str:
    slug = re.sub(r"[^0-9a-zA-Z]+", "_", name.replace("+", "_")).strip("_").lower()
    return slug or "arm"


def _check_arms(arms: dict[str, dict[str, Any]]) -> None:
    if not arms:
        raise UserError("an ablation needs at least one arm")
    known = {f.name for f in dataclasses.fields(training.TrainConfig)}
    slugs: dict[str, str] = {}
    for name, fields in arms.items():
        if not isinstance(fields, dict):
            raise UserError(f"arm {name!r}: expected a dict of TrainConfig fields, got {fields!r}")
        unknown = sorted(set(fields) - known)
        if unknown:
            raise UserError(f"arm {name!r}: {unknown} are not TrainConfig fields")
        fixed = sorted(set(fields) & FIXED_FIELDS)
        if fixed:
            raise UserError(f"arm {name!r} may not change {fixed}: data, batches, budget and seeds are "
                            "the same for every arm (set them on the base configuration)")
        slug = _slug(name)
        if slug in slugs:
            raise UserError(f"arms {slugs[slug]!r} and {name!r} would share the folder runs/{slug}")
        slugs[slug] = name


@dataclass
class Run:
    """One training run of the ablation: an arm, a seed and (RegDB) a split."""

    arm: str
    seed: int
    trial: int | None
    config: training.TrainConfig
    folder: Path

    @property
    def label(self) -> str:
        return f"{self.arm} seed {self.seed}" + ("" if self.trial is None else f" trial {self.trial}")


def plan_runs(base: training.TrainConfig, arms: dict[str, dict[str, Any]], seeds: Sequence[int], out: str | Path,
              regdb_trials: Sequence[int] | None = None) -> list[Run]:
    """The resolved runs, seed-major (every arm of seed 0, then of seed 1, ...): each config is
    ``base`` with the arm's fields, the seed, the split and its own folder; nothing else differs.

    >>> runs = plan_runs(training.TrainConfig(), {"B": {"loss": "none"}, "+MMT": {"loss": "mmt"}}, [0, 1], "x")
    >>> [(r.arm, r.seed, r.config.loss) for r in runs]
    [('B', 0, 'none'), ('+MMT', 0, 'mmt'), ('B', 1, 'none'), ('+MMT', 1, 'mmt')]
    """
    out = Path(out)
    trials: list[int | None] = list(regdb_trials) if regdb_trials else [None]
    runs = []
    for seed in seeds:
        for trial in trials:
            for arm, fields in arms.items():
                folder = out / "runs" / _slug(arm) / f"seed{seed}"
                extra: dict[str, Any] = {}
                if trial is not None:
                    folder = folder / f"trial{trial}"
                    extra["regdb_trial"] = trial
                cfg = dataclasses.replace(base, **fields, **extra, seed=int(seed), out=str(folder), resume=True)
                runs.append(Run(arm, int(seed), trial, cfg, folder))
    return runs


def _identity(cfg: training.TrainConfig) -> dict[str, Any]:
    """What a run is (its config without the run-control fields), JSON-normalised."""
    values = {k: v for k, v in cfg.to_dict().items() if k not in _RUN_CONTROL}
    return json.loads(json.dumps(values))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {exc}; delete it to redo that run") from None


def _check_folder(run: Run) -> dict[str, Any] | None:
    """The stored result of a finished run (``None`` when it has to run); ``UserError`` when
    the folder holds a run with other settings."""
    stored = run.folder / "config.json"
    if stored.exists():
        before = _read_json(stored)
        now = _identity(run.config)
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        if changed:
            detail = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed[:6])
            raise UserError(f"{run.folder} holds run '{run.label}' trained with other settings ({detail}); "
                            "use another --out or delete that folder")
    result = run.folder / "result.json"
    return _read_json(result) if result.exists() else None


# --------------------------------------------------------------------------- running


def _metrics(model: Any, data: Any, cfg: training.TrainConfig) -> dict[str, Any]:
    """The dataset's own protocol (``data.protocol``), main setting; rank-k from the CMC."""
    device = next(model.parameters()).device
    out = training.evaluate_model(model, data, training.image_size(cfg, data), trials=cfg.eval_trials, device=device)
    cmc = out["cmc"]
    out.update({f"rank{k}": cmc[min(k, len(cmc)) - 1] for k in (1, 5, 10, 20)})
    out["protocol"] = data.protocol
    return out


def run_ablation(base: training.TrainConfig, arms: dict[str, dict[str, Any]] | None, seeds: Sequence[int],
                 out: str | Path, regdb_trials: Sequence[int] | None = None, progress: bool = True,
                 log: Callable[[str], None] | None = print) -> dict[str, Any] | None:
    """Train every arm for every seed (and RegDB split), evaluate, compare; see the module
    docstring for what is written to ``out``.

    ``base``: the shared configuration (its ``seed``, ``out`` and ``resume`` are replaced per
    run). ``arms``: ``{name: {TrainConfig field: value}}`` (default :data:`DEFAULT_ARMS`);
    arms may not change :data:`FIXED_FIELDS`. ``regdb_trials``: RegDB splits to train and
    evaluate separately (each seed's numbers are then the mean over the splits). ``progress``:
    the trainer's progress bars (shown when both it and ``base.progress`` are true); ``log`` gets one line per run start and end (rank 0 only).

    Runs under ``torchrun``: every process calls the trainer (which shards the batches with
    DDP); only rank 0 evaluates and writes. Returns the ``results.json`` payload on rank 0,
    ``None`` on the other ranks; a payload with ``"complete": False`` when some run stopped
    early (``max_steps``) — run again to continue.
    """
    base = dataclasses.replace(base)
    try:
        base.validate()
    except UserError:
        raise
    except ValueError as exc:  # a configuration mistake, reported before any work
        raise UserError(str(exc)) from None
    arms = select_arms(None) if arms is None else {k: dict(v) for k, v in arms.items()}
    _check_arms(arms)
    arms = resolve_arms(base, arms, training.dist_setup()[1])
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise UserError(f"seeds must be distinct non-negative integers, got {seeds}")
    if regdb_trials is not None:
        regdb_trials = [int(t) for t in regdb_trials]
        if base.data != "regdb":
            raise UserError(f"--regdb-trials applies to --data regdb, not {base.data!r}")
        bad = [t for t in regdb_trials if not 1 <= t <= 10]
        if bad or not regdb_trials or len(set(regdb_trials)) != len(regdb_trials):
            raise UserError(f"RegDB trials must be distinct numbers in 1..10, got {regdb_trials}")
    for name, fields in arms.items():  # every resolved config must be valid before any work starts
        try:
            dataclasses.replace(base, **fields).validate()
        except ValueError as exc:
            raise UserError(f"arm {name!r}: {exc}") from None

    rank = training.dist_setup()[0]
    say: Callable[[str], None] = (log or (lambda _m: None)) if rank == 0 else (lambda _m: None)
    out = Path(out)
    runs = plan_runs(base, arms, seeds, out, regdb_trials)
    finished = {id(r): _check_folder(r) for r in runs}  # decided up front: the same on every rank
    todo = sum(v is None for v in finished.values())
    say(f"ablation: {len(arms)} arms x {len(seeds)} seeds" + (f" x {len(regdb_trials)} RegDB trials" if regdb_trials
        else "") + f" = {len(runs)} runs ({len(runs) - todo} done earlier) -> {out}")

    data_key, data = None, None
    stopped: list[str] = []
    for i, run in enumerate(runs, start=1):
        tag = f"[{i}/{len(runs)}] {run.label}"
        if finished[id(run)] is not None:
            say(f"{tag}: done earlier, rank-1 {100 * finished[id(run)]['metrics']['rank1']:.2f}%")
            continue
        cfg = dataclasses.replace(run.config, progress=progress and base.progress)
        key = (run.seed if cfg.data == "synthetic" else None, run.trial)
        if key != data_key:
            data_key, data = key, None
            data = training.load_data(cfg)
        if rank == 0:
            run.folder.mkdir(parents=True, exist_ok=True)
            training.write_json(run.folder / "config.json", _identity(run.config))
        resumed = (run.folder / "last.pt").exists()
        say(f"{tag}: training (loss={cfg.loss}, MAG={'on' if cfg.mag else 'off'}"
            + (", resuming from its checkpoint" if resumed else "") + ")")
        t0 = time.perf_counter()
        result = training.train(cfg, data=data, log=None)
        if result.stopped_early:
            stopped.append(run.label)
            say(f"{tag}: stopped at max_steps={cfg.max_steps} (checkpointed); run again to continue")
            continue
        if rank != 0:
            continue
        metrics = _metrics(result.model, result.data, cfg)
        record = {
            "arm": run.arm, "seed": run.seed, "trial": run.trial, "metrics": metrics,
            "history": result.history, "seconds": time.perf_counter() - t0,
            "train_seconds": sum(float(r.get("seconds", 0.0)) for r in result.history),
            "resumed": resumed, "config": _identity(run.config),
        }
        training.write_json(run.folder / "result.json", record)
        finished[id(run)] = record
        say(f"{tag}: rank-1 {100 * metrics['rank1']:.2f}%  mAP {100 * metrics['mAP']:.2f}%  "
            f"mINP {100 * metrics['mINP']:.2f}%  ({record['seconds']:.0f} s)")
    if rank != 0:
        return None

    payload = aggregate(base, arms, seeds, regdb_trials, runs, finished)
    payload["stopped_early"] = stopped
    write_outputs(out, payload)
    say("")
    say(format_markdown(payload, pictures=False))
    say(f"wrote {out / 'results.json'}, {out / 'results.md'} and PNGs"
        + ("" if payload["complete"] else f"; {len(payload['missing'])} runs unfinished: run the same command again"))
    return payload


# --------------------------------------------------------------------------- aggregation


def comparisons_for(arm_names: Sequence[str]) -> list[tuple[str, str]]:
    """The paired comparisons ``(arm, reference)`` among the arms present: every arm against
    ``B``; ``+MAG+MMT`` against ``+MMT`` and ``+MAG``; ``+MMT`` against ``CE+BH``;
    ``+MMT+mem`` against ``+MMT``.

    >>> comparisons_for(["B", "+MAG", "+MMT", "+MAG+MMT", "CE+BH"])[-3:]
    [('+MAG+MMT', '+MMT'), ('+MAG+MMT', '+MAG'), ('+MMT', 'CE+BH')]
    """
    names = list(arm_names)
    pairs = [(a, "B") for a in names if a != "B" and "B" in names]
    for a, b in (("+MAG+MMT", "+MMT"), ("+MAG+MMT", "+MAG"), ("+MMT", "CE+BH"), ("+MMT+mem", "+MMT")):
        if a in names and b in names:
            pairs.append((a, b))
    return pairs


def _mean_rows(groups: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, float]]:
    """Per-epoch mean of several histories (rows matched by epoch; only keys all share)."""
    by_epoch: dict[Any, list[dict[str, Any]]] = {}
    for rows in groups:
        for i, row in enumerate(rows):
            by_epoch.setdefault(row.get("epoch", i + 1), []).append(row)
    out = []
    for epoch in sorted(by_epoch):
        rows = by_epoch[epoch]
        keys = set.intersection(*(set(r) for r in rows))
        out.append({k: sum(float(r[k]) for r in rows) / len(rows) for k in sorted(keys)
                    if all(isinstance(r[k], (int, float)) for r in rows)})
    return out


def _mean_cmc(curves: Sequence[Sequence[float]]) -> list[float]:
    n = min(len(c) for c in curves)
    return [sum(c[k] for c in curves) / len(curves) for k in range(n)]


def aggregate(base: training.TrainConfig, arms: dict[str, dict[str, Any]], seeds: Sequence[int],
              regdb_trials: Sequence[int] | None, runs: Sequence[Run], finished: dict[int, Any]) -> dict[str, Any]:
    """The ``results.json`` payload from the finished runs' records."""
    protocol = _PROTOCOL.get(base.data, "sysu")
    per_arm: dict[str, Any] = {}
    missing = [r.label for r in runs if finished[id(r)] is None]
    for arm, fields in arms.items():
        seed_rows: dict[str, Any] = {}
        for seed in seeds:
            records = [finished[id(r)] for r in runs if r.arm == arm and r.seed == seed]
            if any(rec is None for rec in records):
                continue  # a seed counts only with all its splits
            row: dict[str, Any] = {m: sum(rec["metrics"][m] for rec in records) / len(records) for m in METRICS}
            row["cmc"] = _mean_cmc([rec["metrics"]["cmc"] for rec in records])
            row["seconds"] = sum(rec["seconds"] for rec in records)
            if regdb_trials:
                row["trials"] = {str(rec["trial"]): {m: rec["metrics"][m] for m in METRICS} for rec in records}
                row["history"] = {str(rec["trial"]): rec["history"] for rec in records}
            else:
                row["history"] = records[0]["history"]
            seed_rows[str(seed)] = row
        summary = {}
        for m in METRICS:
            values = [row[m] for row in seed_rows.values()]
            if values:
                mean, low, high = t_interval(values)
                summary[m] = {"mean": mean, "low": low, "high": high, "n": len(values), "values": values}
        config = next(r.config for r in runs if r.arm == arm)
        per_arm[arm] = {
            "fields": fields,
            "config": {k: v for k, v in _identity(config).items() if k not in ("seed", "regdb_trial")},
            "seeds": seed_rows,
            "summary": summary,
        }
    comparisons = []
    for a, b in comparisons_for(list(arms)):
        common = [s for s in per_arm[a]["seeds"] if s in per_arm[b]["seeds"]]
        if not common:
            continue
        entry: dict[str, Any] = {"arm": a, "reference": b, "seeds": [int(s) for s in common]}
        for m in METRICS:
            test = paired_t_test([per_arm[a]["seeds"][s][m] for s in common],
                                 [per_arm[b]["seeds"][s][m] for s in common])
            if test["t"] is not None and not math.isfinite(test["t"]):
                test["t"] = None  # constant non-zero differences (p = 0): keep results.json strict JSON
            entry[m] = test
        comparisons.append(entry)
    return {
        "version": 1,
        "data": base.data,
        "root": base.root,
        "protocol": protocol,
        "protocol_text": _PROTOCOL_TEXT[protocol],
        "seeds": list(seeds),
        "regdb_trials": list(regdb_trials) if regdb_trials else None,
        "base_config": {k: v for k, v in _identity(base).items() if k not in ("seed",)},
        "arms": per_arm,
        "comparisons": comparisons,
        "complete": not missing,
        "missing": missing,
    }


# --------------------------------------------------------------------------- reports


def _pct(value: float | None, signed: bool = False) -> str:
    return "n/a" if value is None else (f"{100 * value:+.2f}" if signed else f"{100 * value:.2f}")


def _cell(s: dict[str, Any] | None) -> str:
    if s is None:
        return "-"
    interval = "n/a" if s["low"] is None else f"{_pct(s['low'])}, {_pct(s['high'])}"
    return f"{_pct(s['mean'])} [{interval}]"


def _p(p: float | None) -> str:
    return "n/a" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def _arm_table(payload: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["arm", "loss", "MAG", *(f"{_LABELS[m]} %" for m in METRICS), "seeds"]
    rows = []
    for arm, info in payload["arms"].items():
        cfg = info["config"]
        n = max((s["n"] for s in info["summary"].values()), default=0)
        rows.append([arm, cfg["loss"], "on" if cfg["mag"] else "off",
                     *(_cell(info["summary"].get(m)) for m in METRICS), str(n)])
    return header, rows


def _comparison_table(payload: dict[str, Any], metrics: Sequence[str] = ("rank1", "mAP", "mINP")
                      ) -> tuple[list[str], list[list[str]]]:
    header = ["comparison", "metric", "per seed (points)", "mean", "95% interval", "p"]
    rows = []
    for c in payload["comparisons"]:
        for m in metrics:
            r = c[m]
            interval = "n/a" if r["low"] is None else f"[{_pct(r['low'], True)}, {_pct(r['high'], True)}]"
            rows.append([f"{c['arm']} - {c['reference']}", _LABELS[m], ", ".join(_pct(d, True) for d in r["diffs"]),
                         _pct(r["mean"], True), interval, _p(r["p"])])
    return header, rows


def _notes(payload: dict[str, Any]) -> list[str]:
    n = len(payload["seeds"])
    notes = [
        f"Protocol: {payload['protocol_text']}. Numbers in percent; intervals: mean +- t(0.975, n-1) s / sqrt(n) "
        f"over the n = {n} seeds.",
        "Paired differences: arm minus reference on the same seed (same data, batches, initial weights); "
        "p: two-sided paired t-test.",
    ]
    if n == 1:
        notes.append("One seed: no interval and no test (n/a); the differences are single draws.")
    else:
        notes.append(f"{n} seeds give the test {n - 1} degrees of freedom: a weak test (5 seeds: the 95 % interval "
                     "is +-2.78 standard errors); p-values are not corrected for the number of comparisons.")
    if payload["regdb_trials"]:
        notes.append(f"RegDB: each seed's value is the mean over splits {payload['regdb_trials']}, "
                     "each split trained and evaluated separately.")
    if not payload["complete"]:
        notes.append(f"Incomplete: {len(payload['missing'])} runs unfinished; a seed counts only when finished.")
    return notes


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def format_markdown(payload: dict[str, Any], pictures: bool = True) -> str:
    """``results.md``: the arm table, the paired differences and the notes."""
    trials = payload["regdb_trials"]
    lines = [f"# Ablation: {payload['data']}, seeds {', '.join(map(str, payload['seeds']))}"
             + (f", RegDB trials {', '.join(map(str, trials))}" if trials else ""), ""]
    lines += _md_table(*_arm_table(payload))
    lines += ["", "## Paired differences (arm - reference, percentage points)", ""]
    lines += _md_table(*_comparison_table(payload))
    lines += ["", "Notes:", ""] + [f"- {n}" for n in _notes(payload)]
    if pictures:
        lines += ["", "![CMC](cmc.png) ![training curves](training_curves.png)"]
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, payload: dict[str, Any]) -> None:
    """``results.json``, ``results.md`` and the PNGs (arms with at least one finished seed)."""
    from .visualize import save_cmc_plot, save_table_image, save_training_curves

    training.write_json(out / "results.json", payload)
    (out / "results.md").write_text(format_markdown(payload))
    done = {a: info for a, info in payload["arms"].items() if info["seeds"]}
    if not done:
        return
    curves = {a: _mean_cmc([s["cmc"] for s in info["seeds"].values()])[:20] for a, info in done.items()}
    save_cmc_plot(out / "cmc.png", curves, title=f"CMC, mean over seeds ({payload['protocol_text']})")
    histories = {}
    for a, info in done.items():
        groups = []
        for s in info["seeds"].values():
            groups.extend(s["history"].values() if isinstance(s["history"], dict) else [s["history"]])
        if any(groups):
            histories[a] = _mean_rows(groups)
    if histories:
        save_training_curves(out / "training_curves.png", histories, keys=["loss", "id_loss", "triplet_loss"],
                             title="training curves, mean over seeds")
    title = f"ablation: {payload['data']}, seeds {', '.join(map(str, payload['seeds']))}"
    save_table_image(out / "table.png", *_arm_table(payload), title=title, notes=_notes(payload))
    if payload["comparisons"]:
        save_table_image(out / "comparisons.png", *_comparison_table(payload),
                         title="paired differences (arm - reference), percentage points")


# --------------------------------------------------------------------------- command line


#: the embedded benchmark's base configuration (``docs/benchmark.md``: chosen from the baseline
#: arms alone, then frozen): what ``mag-mmt ablation --bench`` trains every arm with
BENCH_BASE: dict[str, Any] = {
    "data": "synthetic", "synthetic_preset": "bench", "synthetic_kwargs": {}, "model": "small-cnn",
    "share_point": "F1", "model_kwargs": {"widths": (16, 16, 32, 64, 128)}, "num_identities": 8,
    "num_instances": 4, "epochs": 30, "steps_per_epoch": 10, "warmup_epochs": 5, "optimizer": "sgd",
    "lr": 0.05,
}


def bench_base(base: training.TrainConfig) -> training.TrainConfig:
    """``base`` with :data:`BENCH_BASE` applied; a field that ``base`` sets to something else than
    both its default and the benchmark's value raises :class:`UserError` (a flag the benchmark fixes).

    >>> bench_base(training.TrainConfig(seed=3)).synthetic_preset, bench_base(training.TrainConfig()).lr
    ('bench', 0.05)
    """
    default = training.TrainConfig()
    clash = [k for k, v in BENCH_BASE.items() if getattr(base, k) not in (getattr(default, k), v)]
    if clash:
        raise UserError(f"--bench fixes {', '.join(clash)} (docs/benchmark.md); drop the flags that set them")
    return dataclasses.replace(base, **{k: v for k, v in BENCH_BASE.items()}, recipe=base.recipe)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ablation's own flags (the training flags come from the ``train`` parser)."""
    g = p.add_argument_group("ablation")
    g.add_argument("--arms", default=None,
                   help=f"comma-separated arms (default: all of {', '.join(DEFAULT_ARMS)}); also on request: "
                   f"{', '.join(EXTRA_ARMS)}")
    g.add_argument("--seeds", default=None, help="seeds, e.g. 0,1,2,3,4 or 0-4 (default: --seed)")
    g.add_argument("--regdb-trials", default=None, help="RegDB splits, e.g. 1-10 or 1,3,5 (default: --regdb-trial)")
    g.add_argument("--trials", type=int, default=10, help="gallery draws of the SYSU-MM01 protocol")
    g.add_argument("--bench", action="store_true",
                   help="the embedded benchmark (docs/benchmark.md): synthetic 'bench' preset with its frozen "
                   "model and budget (mag_mmt.ablation.BENCH_BASE)")
    p.set_defaults(out="runs/ablation")


def run_from_args(args: argparse.Namespace, base: training.TrainConfig) -> dict[str, Any] | None:
    """What ``mag-mmt ablation`` runs, from parsed arguments and the base configuration."""
    if args.trials < 1:
        raise UserError("--trials must be >= 1")
    if getattr(args, "bench", False):
        base = bench_base(base)
    base.eval_trials = args.trials
    seeds = parse_int_list(args.seeds, "--seeds") if args.seeds is not None else [args.seed]
    trials = parse_int_list(args.regdb_trials, "--regdb-trials") if args.regdb_trials is not None else None
    return run_ablation(base, select_arms(args.arms), seeds, args.out, regdb_trials=trials,
                        progress=args.progress)
