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
from .engine import TrainConfig, evaluate_model, image_size, train, write_json

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


PRESETS = {
    # The benchmark's generator ("bench" style, docs/benchmark.md) at a smaller budget, chosen from
    # the B arm alone (docs/benchmark.md, "Demo form"): 300 train / 32 test identities, half-width
    # SmallCNN (16..128 channels), all stages shared (F1), SGD lr 0.05 with a 5-epoch warm-up.
    "demo": DemoPreset("bench", 332, epochs=40, num_identities_per_batch=8, num_instances=4,
                       steps_per_epoch=5, trials=10, lr=0.05, num_train_identities=300, warmup_epochs=5,
                       share_point="F1", model_kwargs=(("widths", (16, 16, 32, 64, 128)),)),
    # seconds: for smoke tests
    "tiny": DemoPreset("bench", 12, epochs=1, num_identities_per_batch=2, num_instances=2,
                       steps_per_epoch=2, trials=2),
    # for a GPU
    "large": DemoPreset("bench-large", None, epochs=40, num_identities_per_batch=8, num_instances=4,
                        steps_per_epoch=None, trials=10),
}


def run_demo(out: str | Path = "demo_out", *, preset: str = "demo", epochs: int | None = None, seed: int = 0,
             device: str | None = None, progress: bool = True, log: Any = print,
             arms: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Train and evaluate the arms (default :data:`ARMS`); returns (and writes) the results dictionary.

    ``arms`` maps names to :class:`~mag_mmt.engine.TrainConfig` fields, e.g.
    ``{**ARMS, "CE+BH": {"loss": "batch-hard", "mag": False}}``.
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
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start, cpu_start = time.perf_counter(), time.process_time()
    kwargs = {} if spec.num_identities is None else {"num_identities": spec.num_identities}
    if spec.num_train_identities is not None:
        kwargs["num_train_identities"] = spec.num_train_identities
    data = make_synthetic(spec.synthetic, seed=seed, **kwargs)
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

    results: dict[str, Any] = {}
    for arm, options in arms.items():
        t0, c0, load0 = time.perf_counter(), time.process_time(), os.getloadavg()[0]
        cfg = TrainConfig(
            data="synthetic", synthetic_preset=spec.synthetic, synthetic_kwargs=kwargs, model="small-cnn", seed=seed,
            epochs=epochs or spec.epochs, num_identities=spec.num_identities_per_batch,
            num_instances=spec.num_instances, steps_per_epoch=spec.steps_per_epoch, lr=spec.lr,
            optimizer=spec.optimizer, warmup_epochs=spec.warmup_epochs, share_point=spec.share_point,
            model_kwargs=dict(spec.model_kwargs), epoch_unit=spec.epoch_unit,
            device=device, out=str(out / "runs" / _slug(arm)), progress=progress,
            **options,
        )
        log(f"[{arm}] training: loss={cfg.loss}, MAG={'on' if cfg.mag else 'off'}, {cfg.epochs} epochs")
        result = train(cfg, data=data, log=lambda _msg: None)
        metrics = evaluate_model(result.model, data, image_size(cfg, data), trials=spec.trials)
        metrics["seconds"] = time.perf_counter() - t0
        metrics["cpu_seconds"] = time.process_time() - c0
        metrics["load"] = [load0, os.getloadavg()[0]]
        metrics["final_loss"] = result.history[-1]["loss"] if result.history else float("nan")
        results[arm] = metrics
        log(f"[{arm}] rank-1 {100 * metrics['rank1']:.2f}%  mAP {100 * metrics['mAP']:.2f}%  "
            f"mINP {100 * metrics['mINP']:.2f}%  ({metrics['seconds']:.0f} s, CPU {metrics['cpu_seconds']:.0f} s)")

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
        "cpu_seconds": time.process_time() - cpu_start,
        "threads": torch.get_num_threads(),
    }
    write_json(out / "results.json", payload)
    log("")
    log(format_results(results))
    log(f"\nwrote {out / 'results.json'}, {out / 'augmented_pairs.png'}, {out / 'cmc.png'}, {out / 'table.png'} "
        f"in {payload['seconds']:.0f} s")
    return payload


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
