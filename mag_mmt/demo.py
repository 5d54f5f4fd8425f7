"""``mag-mmt demo``: the paper's ablation, on the embedded synthetic benchmark, in minutes on a CPU.

The quick form of ``mag-mmt ablation`` on the benchmark's generator (``docs/benchmark.md``): the
paper's six Table 2 arms (:data:`ARMS`, the same definitions as :data:`mag_mmt.ablation.DEFAULT_ARMS`),
one seed, one budget, trained with the same data, model, initial weights and batches:

==============  ==========================================  =====
arm             loss                                        MAG
==============  ==========================================  =====
``B``           identity CE only                            off
``+MAG``        identity CE                                 on
``+MMTN``       CE + multi-masking triplet, MMAN only       off
``+MMTP``       CE + multi-masking triplet, MMAP only       off
``+MMT``        CE + multi-masking triplet, both terms      off
``+MAG+MMT``    CE + multi-masking triplet, both terms      on
==============  ==========================================  =====

``arms=`` adds e.g. ``"CE+BH"`` (CE + batch-hard, the baseline users run). Each arm is evaluated
with the SYSU-MM01 rules (thermal queries, visible gallery, all-search, single-shot, 10 gallery
trials). One seed makes no statistics: ``mag-mmt ablation`` repeats arms over seeds. Written to
``OUT``: ``results.json`` (``{"arms": {arm: {"rank1", "mAP", "mINP", "cmc", "seconds",
"cpu_seconds", "load"}}, ...}``, fractions in [0, 1]), ``augmented_pairs.png`` (visible, thermal,
visible', thermal' per row), ``cmc.png`` and ``table.png``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .ablation import DEFAULT_ARMS
from .training import TrainConfig, evaluate_model, image_size, train, write_json

#: the paper's Table 2 arms (B, +MAG, +MMTN, +MMTP, +MMT, +MAG+MMT)
ARMS: dict[str, dict[str, Any]] = {name: DEFAULT_ARMS[name] for name in ("B", "+MAG", "+MMTN", "+MMTP", "+MMT",
                                                                       "+MAG+MMT")}


@dataclass(frozen=True)
class DemoPreset:
    """One demo setting: data size, training recipe and evaluation trials (the same for every arm)."""

    synthetic: str
    num_identities: int | None  # synthetic identities (None: the synthetic preset's)
    epochs: int
    num_identities_per_batch: int
    num_instances: int
    steps_per_epoch: int | None
    trials: int
    lr: float = 0.01
    num_train_identities: int | None = None  # None: half of num_identities (or the synthetic preset's)
    optimizer: str = "sgd"
    warmup_epochs: int = 0
    share_point: str = "F3"
    model_kwargs: tuple[tuple[str, Any], ...] = ()  # extra SmallCNN arguments, e.g. (("widths", (...)),)
    epoch_unit: str = "identities"  # with steps_per_epoch=None: the budget the demo was sized with
    workers: int = 1  # arms trained at a time on a CPU (one process, one thread each)


PRESETS = {
    # The benchmark's generator ("bench" style) and recipe (mag_mmt.ablation.BENCH_BASE) at a smaller
    # budget, chosen from the B arm alone (docs/benchmark.md, "Demo form"): 200 train / 32 test
    # identities, 200 steps (40 epochs x 5), half-width SmallCNN (16..128 channels), all stages
    # shared (F1), Adam lr 0.003 with a 5-epoch warm-up; two arms at a time on a CPU.
    "demo": DemoPreset("bench", 232, epochs=40, num_identities_per_batch=8, num_instances=4,
                       steps_per_epoch=5, trials=10, lr=0.003, num_train_identities=200, optimizer="adam",
                       warmup_epochs=5, share_point="F1", model_kwargs=(("widths", (16, 16, 32, 64, 128)),),
                       workers=2),
    # seconds: for smoke tests
    "tiny": DemoPreset("bench", 12, epochs=1, num_identities_per_batch=2, num_instances=2,
                       steps_per_epoch=2, trials=2),
    # for a GPU
    "large": DemoPreset("bench-large", None, epochs=40, num_identities_per_batch=8, num_instances=4,
                        steps_per_epoch=None, trials=10),
}


def run_demo(out: str | Path = "demo_out", *, preset: str = "demo", epochs: int | None = None, seed: int = 0,
             device: str | None = None, progress: bool = True, log: Any = print,
             arms: dict[str, dict[str, Any]] | None = None, workers: int | None = None) -> dict[str, Any]:
    """Train and evaluate the arms (default :data:`ARMS`); returns (and writes) the results dictionary.

    ``arms`` maps names to :class:`~mag_mmt.training.TrainConfig` fields, e.g.
    ``{**ARMS, "CE+BH": {"loss": "batch-hard", "mag": False}}``. ``workers``: arms trained at a
    time, each in its own process with one thread (default: the preset's, at most the CPU count;
    1 on a GPU). Every arm seeds its own run, so the numbers do not depend on ``workers``.
    """
    import os

    from .augment import ModalityAugment
    from .data.images import ImageDataset
    from .data.synthetic import make_synthetic
    from .visualize import save_augmentation_grid, save_cmc_plot, save_table_image

    if preset not in PRESETS:
        raise ValueError(f"unknown demo preset {preset!r}; choose one of {sorted(PRESETS)}")
    arms = dict(ARMS if arms is None else arms)
    if not arms:
        raise ValueError("the demo needs at least one arm")
    spec = PRESETS[preset]
    if workers is None:
        on_cpu = device == "cpu" or (device is None and not torch.cuda.is_available())
        workers = max(1, min(spec.workers, os.cpu_count() or 1)) if on_cpu else 1
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start, cpu_start = time.perf_counter(), time.process_time()
    kwargs = {} if spec.num_identities is None else {"num_identities": spec.num_identities}
    if spec.num_train_identities is not None:
        kwargs["num_train_identities"] = spec.num_train_identities
    # with worker processes this process draws only the pictures (no full rendering cache)
    data = make_synthetic(spec.synthetic, seed=seed, cache=None if workers == 1 else False, **kwargs)
    log(f"synthetic data ({data.meta['style']} style): {data.num_train_identities} train identities, "
        f"{len(data.train)} train images; {len(data.meta['test_ids'])} test identities, {len(data.query)} "
        f"thermal queries, {len(data.gallery)} visible gallery images")

    # a picture of what MAG does, on the first pairs of the training set
    pairs = _first_pairs(data, 6)
    ds = ImageDataset(pairs, loader=data.loader)
    images = torch.stack([ds[i][0] for i in range(len(pairs))])
    visible, thermal = images[0::2], images[1::2]
    v_aug, t_aug = ModalityAugment(p=1.0, generator=seed)(visible, thermal)
    save_augmentation_grid(out / "augmented_pairs.png", visible, thermal, v_aug, t_aug, scale=3)

    cfgs = {arm: TrainConfig(
        data="synthetic", synthetic_preset=spec.synthetic, synthetic_kwargs=kwargs, model="small-cnn", seed=seed,
        epochs=epochs or spec.epochs, num_identities=spec.num_identities_per_batch,
        num_instances=spec.num_instances, steps_per_epoch=spec.steps_per_epoch, lr=spec.lr,
        optimizer=spec.optimizer, warmup_epochs=spec.warmup_epochs, share_point=spec.share_point,
        model_kwargs=dict(spec.model_kwargs), epoch_unit=spec.epoch_unit,
        device=device, out=str(out / "runs" / _slug(arm)), progress=progress and workers == 1,
        **options,
    ) for arm, options in arms.items()}
    results: dict[str, Any] = {}

    def report(arm: str, metrics: dict[str, Any]) -> None:
        results[arm] = metrics
        log(f"[{arm}] rank-1 {100 * metrics['rank1']:.2f}%  mAP {100 * metrics['mAP']:.2f}%  "
            f"mINP {100 * metrics['mINP']:.2f}%  ({metrics['seconds']:.0f} s, CPU {metrics['cpu_seconds']:.0f} s)")

    if workers == 1:
        for arm, cfg in cfgs.items():
            log(f"[{arm}] training: loss={cfg.loss}, MAG={'on' if cfg.mag else 'off'}, {cfg.epochs} epochs")
            report(arm, _run_arm(cfg, spec.trials, data))
    else:  # one arm per process, one thread each (the arms' numbers do not depend on the order)
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        log(f"training {len(cfgs)} arms, {workers} at a time (one process and one thread each)")
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {arm: pool.submit(_run_arm, cfg, spec.trials, None, 1) for arm, cfg in cfgs.items()}
            for arm, future in futures.items():
                report(arm, future.result())
    results = {arm: results[arm] for arm in cfgs}

    title = "Synthetic RGB-IR, thermal-to-visible, all-search single-shot"
    save_cmc_plot(out / "cmc.png", {arm: r["cmc"] for arm, r in results.items()}, title=title)
    n_test = len(data.meta["test_ids"])
    save_table_image(out / "table.png", ["arm", "Rank-1", "mAP", "mINP", "s"],
                     [[arm, f"{100 * r['rank1']:.1f}", f"{100 * r['mAP']:.1f}", f"{100 * r['mINP']:.1f}",
                       f"{r['seconds']:.0f}"] for arm, r in results.items()],
                     title=f"mag-mmt demo ({preset}, seed {seed}): {title}",
                     notes=[f"{n_test} test identities (chance rank-1 {100 / n_test:.1f} %); one seed: "
                            "no interval, see `mag-mmt ablation --seeds`"])
    payload = {
        "arms": results,
        "preset": preset,
        "seed": seed,
        "test_identities": n_test,
        "protocol": "SYSU-MM01 rules, all-search, single-shot, thermal query -> visible gallery",
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu_start,  # this process (the arms' own: per arm)
        "workers": workers,
        "threads": torch.get_num_threads() if workers == 1 else 1,
    }
    write_json(out / "results.json", payload)
    log("")
    log(format_results(results))
    log(f"\nwrote {out / 'results.json'}, {out / 'augmented_pairs.png'}, {out / 'cmc.png'}, {out / 'table.png'} "
        f"in {payload['seconds']:.0f} s")
    return payload


_WORKER_DATA: dict[str, Any] = {}


def _run_arm(cfg: TrainConfig, trials: int, data: Any = None, threads: int | None = None) -> dict[str, Any]:
    """Train one arm and evaluate it: the metrics with ``seconds``, ``cpu_seconds`` (this
    process), ``load`` (1-minute load average before and after) and ``final_loss``. With ``data``
    ``None`` the synthetic data is made from ``cfg`` (in a worker process)."""
    import os

    if threads is not None:
        torch.set_num_threads(threads)
    t0, c0, load0 = time.perf_counter(), time.process_time(), os.getloadavg()[0]
    if data is None:  # a worker process renders the data once for all its arms
        from .data.synthetic import make_synthetic

        key = repr((cfg.synthetic_preset, cfg.seed, sorted(cfg.synthetic_kwargs.items())))
        if key not in _WORKER_DATA:
            _WORKER_DATA[key] = make_synthetic(cfg.synthetic_preset, seed=cfg.seed, **cfg.synthetic_kwargs)
        data = _WORKER_DATA[key]
    result = train(cfg, data=data, log=lambda _msg: None)
    metrics = evaluate_model(result.model, data, image_size(cfg, data), trials=trials)
    metrics["seconds"] = time.perf_counter() - t0
    metrics["cpu_seconds"] = time.process_time() - c0
    metrics["load"] = [load0, os.getloadavg()[0]]
    metrics["final_loss"] = result.history[-1]["loss"] if result.history else float("nan")
    return metrics


def _slug(arm: str) -> str:
    """A folder name for an arm: ``"+MAG+MMT"`` -> ``"mag_mmt"``, ``"B"`` -> ``"b"``."""
    return "_".join(part for part in re.split(r"[^0-9a-zA-Z]+", arm.lower()) if part) or "arm"


def format_results(results: dict[str, dict[str, Any]]) -> str:
    """The demo's table: one row per arm, Rank-1 / mAP / mINP in percent."""
    lines = [f"{'arm':<10} {'Rank-1':>7} {'mAP':>7} {'mINP':>7}", "-" * 34]
    for arm, r in results.items():
        lines.append(f"{arm:<10} {100 * r['rank1']:7.2f} {100 * r['mAP']:7.2f} {100 * r['mINP']:7.2f}")
    return "\n".join(lines)


def _first_pairs(data: Any, n: int) -> list:
    """``[v0, t0, v1, t1, ...]``: one visible and one thermal training image of ``n`` identities."""
    by_id: dict[int, dict[int, Any]] = {}
    for s in data.train:
        by_id.setdefault(s.identity, {}).setdefault(s.modality, s)
    out = []
    for pid in sorted(by_id)[:n]:
        out.extend([by_id[pid][0], by_id[pid][1]])
    return out
