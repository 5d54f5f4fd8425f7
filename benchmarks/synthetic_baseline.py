"""Baseline checks of the synthetic benchmark (docs/benchmark.md): one arm, one seed.

Trains one *baseline* arm (``B`` = identity CE only, or ``bh`` = CE + batch-hard; MAG off) on a
synthetic preset, evaluates it with the SYSU-MM01 rules (thermal query -> visible gallery,
all-search, single-shot) on the test identities and, for the train/test gap, on as many
training identities, and runs a colour-only matcher (no learning) on the same protocol.
Prints one JSON line (and writes it with ``--out``).

    PYTHONPATH=$PWD python benchmarks/synthetic_baseline.py --preset bench --arm bh --seed 0
    PYTHONPATH=$PWD python benchmarks/synthetic_baseline.py --preset bench --colour-only
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace

import torch

from mag_mmt.data.records import THERMAL, VISIBLE, ReIDData
from mag_mmt.data.synthetic import make_synthetic
from mag_mmt.training import TrainConfig, evaluate_model, image_size, train
from mag_mmt.evaluation import evaluate_sysu

ARMS = {"B": "none", "bh": "batch-hard"}


def person_region(x: torch.Tensor) -> torch.Tensor:
    """The central crop of ``(N, 3, H, W)`` images where the person stands."""
    h, w = x.shape[-2:]
    return x[..., h // 8 : 15 * h // 16, w // 4 : 3 * w // 4]


def colour_descriptor(images: torch.Tensor, kind: str = "hist", bins: int = 16) -> torch.Tensor:
    """Colour-only descriptors of ``uint8`` ``(N, 3, H, W)`` images (no learning).

    ``"mean"``: the mean intensity of each channel of the person region (N, 3);
    ``"hist"``: per-channel intensity histograms of the person region, L1-normalised and
    square-rooted (Hellinger), ``(N, 3 * bins)``. A thermal image has three equal channels,
    so both compare its intensity to each colour channel of a visible image.
    """
    x = person_region(images).long().flatten(2)  # (N, 3, P)
    if kind == "mean":
        return x.float().mean(-1) / 255.0
    q = x * bins // 256
    hist = torch.zeros(x.shape[0], 3, bins).scatter_add_(2, q, torch.ones(q.shape))
    return (hist / hist.sum(-1, keepdim=True)).flatten(1).sqrt()


def colour_matcher(data: ReIDData, kind: str, trials: int = 10) -> dict[str, float]:
    """Rank-1 / mAP of the colour-only matcher across modalities (SYSU rules) and, as a
    control, within the visible modality (camera 1 queries, other visible cameras gallery)."""
    render = data.loader.render_paths
    qf = colour_descriptor(render([s.path for s in data.query]), kind)
    gf = colour_descriptor(render([s.path for s in data.gallery]), kind)
    res = evaluate_sysu(qf, gf, data.query, data.gallery, trials=trials)
    vis_q = [s for s in data.gallery if s.camera == 1]
    vis_g = [s for s in data.gallery if s.camera != 1]
    d = torch.cdist(colour_descriptor(render([s.path for s in vis_q]), kind),
                    colour_descriptor(render([s.path for s in vis_g]), kind))
    iq = torch.tensor([s.identity for s in vis_q])
    ig = torch.tensor([s.identity for s in vis_g])
    within = float((ig[d.argmin(1)] == iq).float().mean())
    return {"rank1": float(res.cmc[0]), "mAP": float(res.mAP), "within_visible_rank1": within}


def train_split(data: ReIDData, num_ids: int) -> ReIDData:
    """The first ``num_ids`` training identities laid out as a SYSU test split (thermal
    query, visible gallery pool), for the train side of the train/test gap."""
    ids = sorted({s.identity for s in data.train})[:num_ids]
    keep = set(ids)
    query = [s for s in data.train if s.identity in keep and s.modality == THERMAL]
    gallery = [s for s in data.train if s.identity in keep and s.modality == VISIBLE]
    return replace(data, query=query, gallery=gallery)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="bench")
    p.add_argument("--num-identities", type=int)
    p.add_argument("--num-train-identities", type=int)
    p.add_argument("--images-per-camera", type=int)
    p.add_argument("--size", type=int, nargs=2)
    p.add_argument("--arm", choices=sorted(ARMS), default="bh")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=400, help="training steps in all")
    p.add_argument("--steps-per-epoch", type=int, default=10)
    p.add_argument("--warmup-epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    p.add_argument("--eval-feature", choices=("bn", "pool"), default="bn")
    p.add_argument("--batch-ids", type=int, default=8)
    p.add_argument("--batch-instances", type=int, default=4)
    p.add_argument("--widths", type=int, nargs=5, default=[16, 16, 32, 64, 128])
    p.add_argument("--share-point", default="F1")
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--colour-only", action="store_true", help="run only the colour-only matcher")
    p.add_argument("--out", help="append the JSON line to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    overrides = {k: v for k, v in (("num_identities", args.num_identities),
                                   ("num_train_identities", args.num_train_identities),
                                   ("images_per_camera", args.images_per_camera),
                                   ("size", tuple(args.size) if args.size else None)) if v is not None}
    t0 = time.perf_counter()
    data = make_synthetic(args.preset, seed=args.seed, **overrides)
    data.loader.render_paths([data.train[0].path])  # render (and cache) everything now
    render_s = time.perf_counter() - t0
    n_test = len(data.meta["test_ids"])
    row: dict = {"preset": args.preset, **{k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
                 "seed": args.seed, "train_ids": data.num_train_identities, "test_ids": n_test,
                 "chance_rank1": 1.0 / n_test, "render_s": round(render_s, 1), "threads": args.threads,
                 "load": os.getloadavg()[0]}
    for kind in ("mean", "hist"):
        row[f"colour_{kind}"] = colour_matcher(data, kind, args.trials)
    if not args.colour_only:
        epochs = -(-args.steps // args.steps_per_epoch)
        with tempfile.TemporaryDirectory() as tmp:
            cfg = TrainConfig(
                data="synthetic", synthetic_preset=args.preset, synthetic_kwargs=overrides, model="small-cnn",
                seed=args.seed, loss=ARMS[args.arm], mag=False, epochs=epochs,
                steps_per_epoch=args.steps_per_epoch, warmup_epochs=args.warmup_epochs, lr=args.lr,
                num_identities=args.batch_ids, num_instances=args.batch_instances, share_point=args.share_point,
                optimizer=args.optimizer,
                model_kwargs={"widths": tuple(args.widths), "eval_feature": args.eval_feature}, out=tmp, progress=False,
            )
            t1, c1 = time.perf_counter(), time.process_time()
            result = train(cfg, data=data, log=None)
            train_s, train_cpu_s = time.perf_counter() - t1, time.process_time() - c1
            size = image_size(cfg, data)
            t2 = time.perf_counter()
            test = evaluate_model(result.model, data, size, trials=args.trials)
            eval_s = time.perf_counter() - t2
            train_side = evaluate_model(result.model, train_split(data, n_test), size, trials=args.trials)
        row.update(arm=args.arm, loss=cfg.loss, steps=epochs * args.steps_per_epoch, lr=args.lr,
                   optimizer=args.optimizer, eval_feature=args.eval_feature,
                   warmup_epochs=args.warmup_epochs, widths=args.widths, share_point=args.share_point,
                   batch=f"{args.batch_ids}x{args.batch_instances}",
                   test={k: round(test[k], 4) for k in ("rank1", "mAP", "mINP")},
                   train={k: round(train_side[k], 4) for k in ("rank1", "mAP", "mINP")},
                   final_loss=round(result.history[-1]["loss"], 4), train_s=round(train_s, 1),
                   train_cpu_s=round(train_cpu_s, 1),
                   eval_s=round(eval_s, 1), arm_s=round(train_s + eval_s, 1))
    row["load_end"] = os.getloadavg()[0]
    line = json.dumps(row)
    print(line)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")
    return row


if __name__ == "__main__":
    main()
