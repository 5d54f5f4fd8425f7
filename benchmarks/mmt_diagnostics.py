"""Why an arm wins or loses on the embedded benchmark: per-term gradients and margins in training.

Trains one arm (a name of :data:`mag_mmt.ablation.DEFAULT_ARMS`) on the frozen benchmark base
(:data:`mag_mmt.ablation.BENCH_BASE`, or ``--steps`` for another budget) in stages (``max_steps`` +
``resume``: the same run as one without stops) and, after each stage, on fixed *probe* batches of
training images (the same for every arm: ``P`` identities x ``K`` images per modality, no
augmentation, the model in training mode as in a step) reports:

* the gradient norm over the backbone parameters of each term *alone and unweighted*: identity
  CE, MMAN, MMAP, the batch-hard triplet; the cosines between the gradients of MMAN and MMAP, and of
  CE and each triplet term (negative: the terms pull against each other);
* the margins reached, with the raw training features and with L2-normalised ones: per anchor the
  cross-modality hardest-positive, easiest-positive and hardest-negative distances, the share of
  anchors that violate MMAN (``d_hp - d_hn + m1 > 0``) and MMAP (``d_hp - d_ep - m2 > 0``), the mean
  distances and the mean feature norm (how large the fixed margins are against the feature scale);
* test rank-1 / mAP (SYSU rules, the benchmark's test identities).

Prints one JSON line per stage (and appends it to ``--out``).

    PYTHONPATH=$PWD python benchmarks/mmt_diagnostics.py --arm +MMT --stages 50,150,300
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time

import torch
import torch.nn.functional as F

from mag_mmt import ablation, training
from mag_mmt.data.records import THERMAL, VISIBLE
from mag_mmt.data.synthetic import make_synthetic
from mag_mmt.functional import batch_hard_triplet_loss, multi_masking_triplet_loss


def probe_batches(data, num_batches: int, p: int, k: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``num_batches`` fixed batches: ``p`` training identities x ``k`` visible then ``k`` thermal
    images each, as normalised float images, labels and modalities (visible rows first)."""
    by_id: dict[int, dict[int, list]] = {}
    for s in data.train:
        by_id.setdefault(s.identity, {VISIBLE: [], THERMAL: []})[s.modality].append(s)
    ids = sorted(by_id)
    out = []
    for b in range(num_batches):
        chosen = ids[b * p:(b + 1) * p]
        vis = [s for i in chosen for s in by_id[i][VISIBLE][:k]]
        th = [s for i in chosen for s in by_id[i][THERMAL][:k]]
        images = data.loader.render_paths([s.path for s in vis + th]).float() / 255.0
        labels = torch.tensor([data.meta["train_id_map"][s.identity] for s in vis + th])
        modalities = torch.tensor([0] * len(vis) + [1] * len(th))
        out.append((training.normalize_images(images), labels, modalities))
    return out


def _grad_vector(loss: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(q)).flatten() for g, q in zip(grads, params)])


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a, b, dim=0)) if a.norm() > 0 and b.norm() > 0 else float("nan")


def _margins(feat: torch.Tensor, labels: torch.Tensor, modalities: torch.Tensor, m1: float, m2: float) -> dict:
    """Cross-modality hardest/easiest positive and hardest negative distances per anchor."""
    d = torch.cdist(feat, feat)
    same = labels[:, None] == labels[None, :]
    cross = modalities[:, None] != modalities[None, :]
    inf = torch.tensor(float("inf"))
    d_hp = torch.where(same & cross, d, -inf).max(1).values
    d_ep = torch.where(same & cross, d, inf).min(1).values
    d_hn = torch.where(~same & cross, d, inf).min(1).values
    return {"d_hp": float(d_hp.mean()), "d_ep": float(d_ep.mean()), "d_hn": float(d_hn.mean()),
            "mman_active": float((d_hp - d_hn + m1 > 0).float().mean()),
            "mmap_active": float((d_hp - d_ep - m2 > 0).float().mean()),
            "rank_gap": float((d_hn - d_hp).mean())}


def diagnose(model: torch.nn.Module, probes, cfg: training.TrainConfig) -> dict:
    """Per-term gradient norms (backbone), their cosines, margins raw / normalised, averaged over probes."""
    params = [q for name, q in model.named_parameters() if q.requires_grad and "classifier" not in name
              and "bottleneck" not in name]
    model.train()
    rows = []
    for images, labels, modalities in probes:
        half = images.shape[0] // 2
        feat, logits = model(images[:half], images[half:])
        terms = {
            "ce": F.cross_entropy(logits, labels),
            "mman": multi_masking_triplet_loss(feat, labels, modalities, margin=cfg.margin, pos_margin=cfg.pos_margin,
                                               pos_weight=0.0, mman_weight=1.0, validate=False),
            "mmap": multi_masking_triplet_loss(feat, labels, modalities, margin=cfg.margin, pos_margin=cfg.pos_margin,
                                               pos_weight=1.0, mman_weight=0.0, validate=False),
            "bh": batch_hard_triplet_loss(feat, labels, modalities, margin=cfg.margin, validate=False),
        }
        grads = {name: _grad_vector(t, params) for name, t in terms.items()}
        row = {f"{name}_loss": float(t.detach()) for name, t in terms.items()}
        row.update({f"{name}_grad": float(g.norm()) for name, g in grads.items()})
        row["cos_mman_mmap"] = _cos(grads["mman"], grads["mmap"])
        row["cos_ce_mmap"] = _cos(grads["ce"], grads["mmap"])
        row["cos_ce_mman"] = _cos(grads["ce"], grads["mman"])
        row["cos_ce_bh"] = _cos(grads["ce"], grads["bh"])
        f = feat.detach()
        row["feat_norm"] = float(f.norm(dim=1).mean())
        row.update({f"raw_{k}": v for k, v in _margins(f, labels, modalities, cfg.margin, cfg.pos_margin).items()})
        row.update({f"unit_{k}": v for k, v in _margins(F.normalize(f, dim=1), labels, modalities, cfg.margin,
                                                        cfg.pos_margin).items()})
        rows.append(row)
    model.zero_grad(set_to_none=True)
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arm", default="+MMT", help=f"one of {', '.join(ablation.DEFAULT_ARMS)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stages", default="50,150,300", help="steps after which to diagnose (the last ends the run)")
    p.add_argument("--steps", type=int, help="budget in steps (default: the frozen benchmark's)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                   help="an extra TrainConfig field for this arm, e.g. pos_weight=0.5")
    p.add_argument("--probes", type=int, default=4, help="probe batches of 8 identities x 4 images per modality")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="append the JSON lines to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    stages = [int(s) for s in args.stages.split(",")]
    fields = dict(ablation.DEFAULT_ARMS[args.arm])
    for item in args.set:
        key, _, value = item.partition("=")
        fields[key] = json.loads(value)
    base = ablation.bench_base(training.TrainConfig(seed=args.seed, progress=False, device="cpu"))
    if args.steps is not None:
        base = dataclasses.replace(base, epochs=-(-args.steps // base.steps_per_epoch))
    data = make_synthetic(base.synthetic_preset, seed=args.seed, **base.synthetic_kwargs)
    probes = probe_batches(data, args.probes, base.num_identities, base.num_instances)
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = dataclasses.replace(base, **fields, out=tmp, resume=True)
        for stop in stages:
            t0 = time.perf_counter()
            result = training.train(dataclasses.replace(cfg, max_steps=stop), data=data, log=None)
            train_s = time.perf_counter() - t0
            row = {"arm": args.arm, "fields": fields, "seed": args.seed, "step": stop,
                   "budget": cfg.epochs * cfg.steps_per_epoch, "train_s": round(train_s, 1),
                   "load": os.getloadavg()[0], **diagnose(result.model, probes, cfg)}
            test = training.evaluate_model(result.model, data, training.image_size(cfg, data), trials=cfg.eval_trials)
            row.update(test_rank1=test["rank1"], test_mAP=test["mAP"])
            line = json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
            print(line, flush=True)
            lines.append(row)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(line + "\n")
    return lines


if __name__ == "__main__":
    main()
