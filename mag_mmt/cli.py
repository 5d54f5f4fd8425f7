"""The ``mag-mmt`` command line: ``train``, ``eval``, ``demo``, ``pretrain``, ``ablation``, ``plot`` and
``convert-checkpoint``.

This module only parses arguments and checks them (before any work starts); the work is
done by one function per command: :mod:`mag_mmt.training` (train, eval, pretrain), :mod:`mag_mmt.demo`,
:mod:`mag_mmt.ablation`, :mod:`mag_mmt.visualize` and :mod:`mag_mmt.checkpoint`.

Examples::

    mag-mmt demo --out demo_out
    mag-mmt train --data sysu --root /data/SYSU-MM01 --model dual-swin \\
        --pretrained swin_t-704ceda3.pth --epochs 60 --out runs/sysu
    torchrun --nproc_per_node 4 -m mag_mmt.cli train --data sysu --root /data/SYSU-MM01 ...
    mag-mmt train --recipe agw --data sysu --root /data/SYSU-MM01 --pretrained resnet50-0676ba61.pth --dry-run
    mag-mmt eval --data sysu --root /data/SYSU-MM01 --checkpoint runs/sysu/last.pt --full
    mag-mmt pretrain --data synthetic --epochs 5 --out runs/mmgl
    mag-mmt train --data synthetic --init runs/mmgl/pretrain.pt --out runs/finetune
    mag-mmt ablation --data synthetic --arms B,+MAG,+MMT,+MAG+MMT --seeds 0-4 --out runs/ablation
    mag-mmt plot runs/sysu   # runs/sysu/curves.png from runs/sysu/history.csv
    mag-mmt convert-checkpoint old/last.pt runs/sysu/last.pt   # a mag-mmt/1 file, rewritten safely

Mistakes in the input (a missing root, a truncated image, a bad argument, a truncated
checkpoint...) raise :class:`mag_mmt.errors.UserError`; :func:`main` prints them as
``mag-mmt: error: ...`` with exit status 2 and no traceback (``--debug`` adds it). Any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import sys
import traceback
import warnings
from pathlib import Path
from typing import Sequence

from .data.synthetic import SYNTHETIC_PRESETS
from .training.config import DATASETS, LOSSES, PROTOCOLS, TrainConfig
from .errors import UserError


class CLIError(UserError):
    """A bad argument, reported as ``mag-mmt: error: ...`` with exit code 2."""


def _pair(kind: type) -> callable:  # type: ignore[valid-type]
    def parse(text: str) -> tuple:
        parts = text.replace("x", ",").split(",")
        if len(parts) != 2:
            raise argparse.ArgumentTypeError(f"expected two values like 'A,B', got {text!r}")
        try:
            return (kind(parts[0]), kind(parts[1]))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", choices=DATASETS, default="synthetic",
                   help="dataset: embedded synthetic data, SYSU-MM01, RegDB or a CSV manifest")
    g.add_argument("--root", help="dataset folder (sysu, regdb) or manifest CSV file (manifest)")
    g.add_argument("--synthetic-preset", default=None, choices=sorted(SYNTHETIC_PRESETS),
                   help="synthetic data size (default: demo; eval: the checkpoint's)")
    g.add_argument("--regdb-trial", type=int, default=1, help="RegDB split 1..10")
    g.add_argument("--img-size", type=_pair(int), default=None, metavar="H,W",
                   help="input size (default: 224,224 for dual-swin; the data's size for synthetic; 288,144)")
    g.add_argument("--workers", type=int, default=0, help="DataLoader workers")


def _model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", choices=("dual-swin", "dual-resnet50", "small-cnn"), default="small-cnn")
    g.add_argument("--share-point", default="F3", choices=("F1", "F2", "F3", "F4", "F5", "stem", "0", "1", "2", "3", "4", "5"),
                   help="where the two modality paths start sharing weights (paper: F3); stem or 1: "
                   "only the stem is modality-specific (AGW, dual-resnet50); N: N specific units")
    g.add_argument("--pretrained", help="local ImageNet weights: Swin-T (torchvision, timm or official Swin file) for dual-swin, torchvision resnet50 for dual-resnet50")


def _train_args(p: argparse.ArgumentParser) -> None:
    _data_args(p)
    _model_args(p)
    p.add_argument("--init", help="start from this checkpoint's backbone weights (train or MMGL pretrain)")
    g = p.add_argument_group("loss")
    g.add_argument("--loss", choices=LOSSES, default="mmt",
                   help="triplet term: multi-masking (paper), batch-hard, weighted-regularised (AGW) or none")
    g.add_argument("--margin", type=float, default=0.3, help="m1")
    g.add_argument("--pos-margin", type=float, default=0.1, help="m2 (MMT only)")
    g.add_argument("--pos-weight", type=float, default=1.0, help="lambda, weight of MMAP (MMT only; 0: MMAN alone)")
    g.add_argument("--mman-weight", type=float, default=1.0, help="weight of MMAN (MMT only; 0: MMAP alone)")
    g.add_argument("--id-weight", type=float, default=1.0)
    g.add_argument("--triplet-weight", type=float, default=1.0)
    g.add_argument("--memory-size", type=int, default=0, metavar="N",
                   help="cross-modality memory: the last N embeddings (labels, modalities) of past batches as extra "
                   "references of the triplet term (mmt, batch-hard; N >= the global batch; saved in checkpoints). "
                   "0: off (default)")
    g = p.add_argument_group("modality augmentation (MAG)")
    g.add_argument("--mag", dest="mag", action="store_true", default=True, help="on (default)")
    g.add_argument("--no-mag", dest="mag", action="store_false", help="off")
    g.add_argument("--mag-p", type=float, default=0.5)
    g.add_argument("--mag-scale", type=_pair(float), default=TrainConfig.mag_scale, metavar="LO,HI")
    g.add_argument("--mag-ratio", type=_pair(float), default=TrainConfig.mag_ratio, metavar="LO,HI")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=10,
                   help="epochs; one epoch is one pass over the larger modality's training images, shared by "
                   "all processes (AGW's/CAJ's unit), unless --epoch-unit identities")
    g.add_argument("--epoch-unit", choices=("images", "identities"), default="images",
                   help="images: ceil(max(#visible, #thermal) / (P*K*processes)) steps per epoch (default); "
                   "identities: every identity once, ceil(#identities / (P*processes)) steps")
    g.add_argument("--steps-per-epoch", type=int, default=None, help="fixed steps per epoch (overrides --epoch-unit)")
    g.add_argument("-P", "--num-identities", type=int, default=8, help="identities per batch")
    g.add_argument("-K", "--num-instances", type=int, default=4, help="images per identity and modality")
    g.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    g.add_argument("--lr", type=float, default=0.01)
    g.add_argument("--weight-decay", type=float, default=5e-4)
    g.add_argument("--warmup-epochs", type=int, default=0)
    g.add_argument("--milestones", type=int, nargs="*", default=[], help="epochs where lr drops x0.1")
    g.add_argument("--amp", dest="amp", action="store_true", default=None, help="mixed precision (default: on CUDA)")
    g.add_argument("--no-amp", dest="amp", action="store_false")
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    g.add_argument("--out", default="runs/train",
                   help="output folder (last.pt, history.csv/.json, tensorboard/, curves.png)")
    g.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    g.add_argument("--checkpoint-every", type=int, default=0, help="also checkpoint every N steps")
    g.add_argument("--max-steps", type=int, default=None, help="stop after N steps (checkpointed)")
    g.add_argument("--eval-every", type=int, default=0, help="evaluate every N epochs (0: only at the end)")
    g.add_argument("--log-every", type=int, default=10, help="steps per row of OUT/history.csv")
    g.add_argument("--no-progress", dest="progress", action="store_false")
    _recipe_args(p)


# ---- recipes (mag_mmt.recipes): named recipes, the augmentation pipeline, validation-based selection
def _recipe_args(p: argparse.ArgumentParser) -> None:
    """``train``'s recipe, pipeline and selection flags; then every flag's default becomes None so
    that only flags given on the command line override the recipe (:func:`train_config`)."""
    g = p.add_argument_group("recipe (docs/recipes.md)")
    g.add_argument("--recipe", choices=("agw", "caj", "paper"), default=None,
                   help="set every training field to AGW's, CAJ's or the paper's values; flags override single fields")
    g.add_argument("--dry-run", action="store_true", help="print the resolved configuration as JSON and exit")
    g.add_argument("--test-feature", choices=("bn", "pool"), help="eval feature: BNNeck (bn) or pooled (pool)")
    g.add_argument("--no-non-local", dest="non_local", action="store_false", help="dual-resnet50 without non-local blocks")
    g = p.add_argument_group("augmentation pipeline (--augment reid)")
    g.add_argument("--augment", choices=("basic", "reid"),
                   help="basic: flip -> MAG -> normalise (default); reid: pad/crop/flip, erasing, channel ops, views, MAG")
    g.add_argument("--pad", type=int, help="Pad(N) before the random crop back to --img-size (reid; 10)")
    g.add_argument("--flip", dest="flip", action="store_true", help="random horizontal flip (default)")
    g.add_argument("--no-flip", dest="flip", action="store_false")
    g.add_argument("--erase-p", type=float, help="channel-wise random erasing probability on every view (CAJ: 0.5)")
    g.add_argument("--channel-exchange", dest="channel_exchange", action="store_true",
                   help="ChannelExchange(gray=2) on the last visible view (CAJ)")
    g.add_argument("--no-channel-exchange", dest="channel_exchange", action="store_false")
    g.add_argument("--adaptive-gray-p", type=float, help="ChannelAdapGray probability on the thermal view (CAJ: 0.5)")
    g.add_argument("--jitter", type=float, nargs=4, metavar=("B", "C", "S", "H"),
                   help="colour jitter of the visible views: brightness, contrast, saturation, hue")
    g.add_argument("--visible-views", type=int, choices=(1, 2), help="visible views per pair (CAJ: 2)")
    g = p.add_argument_group("learning-rate schedule and model selection")
    g.add_argument("--momentum", type=float, help="SGD momentum (0.9)")
    g.add_argument("--backbone-lr-mult", type=float, help="backbone lr = lr * this; BNNeck + classifier get lr (AGW: 0.1)")
    g.add_argument("--warmup-mode", choices=("linear", "staircase"),
                   help="linear per step, or AGW's per-epoch staircase lr * (epoch + 1) / warmup")
    g.add_argument("--val", choices=("none", "auto", "dataset", "holdout"),
                   help="select best.pt on a validation split every --eval-every epochs: the dataset's (SYSU "
                   "exp/val_id.txt, manifest val rows), held-out training identities, or auto (default: none)")
    g.add_argument("--val-identities", type=float, help="identities held out for validation: N, or a fraction (0.1)")
    g.add_argument("--select-metric", choices=("rank1", "mAP", "mINP"), help="validation metric for best.pt (rank1)")
    fields = {f.name for f in dataclasses.fields(TrainConfig)} | set(ARG_FIELDS)
    p.set_defaults(**{a.dest: None for a in p._actions if a.dest in fields})


#: train flags whose dest is not the TrainConfig field name
ARG_FIELDS = {"workers": "num_workers"}


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` of a ``train`` command line: ``--recipe``'s values (or the
    defaults), then every flag given explicitly (flags not given are None)."""
    from .recipes import resolve_recipe

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {ARG_FIELDS.get(k, k): v for k, v in vars(args).items() if v is not None and ARG_FIELDS.get(k, k) in fields}
    given.pop("recipe", None)
    if "milestones" in given:
        given["milestones"] = tuple(given["milestones"])
    try:
        return resolve_recipe(getattr(args, "recipe", None), given)
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mag-mmt",
        description="Modality augmentation (MAG) and multi-masking triplet loss (MMT) for "
        "visible-infrared person re-identification.",
    )
    debug_help = "on an input error, also print the Python traceback"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="{demo,train,eval,pretrain,ablation,plot,convert-checkpoint}")

    p = sub.add_parser("train", help="train a model")
    _train_args(p)

    p = sub.add_parser("eval", help="evaluate a checkpoint with a paper protocol")
    _data_args(p)
    p.set_defaults(data=None, regdb_trial=None)  # default: the checkpoint's dataset
    p.add_argument("--checkpoint", required=True, help="a training checkpoint (OUT/last.pt)")
    p.add_argument("--protocol", choices=PROTOCOLS, default=None,
                   help="sysu, regdb or npu (default: the dataset's own: SYSU-MM01 and synthetic sysu, "
                   "RegDB regdb, manifest npu)")
    p.add_argument("--full", action="store_true",
                   help="every setting of the protocol (sysu: all/indoor x single/multi-shot; regdb: both "
                   "directions; npu: both directions x all/each scene x single/multi-shot)")
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--flip", action="store_true", help="average features of image and its mirror")
    p.add_argument("--distance", choices=("euclidean", "cosine"), default="euclidean",
                   help="ranking distance (cosine ranks like AGW's test.py)")
    p.add_argument("--gallery-sampling", choices=("default", "agw"), default="default",
                   help="SYSU-MM01 gallery draw: ours, or AGW's test.py galleries (single-shot)")
    p.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (Zhong et al. 2017)")
    p.add_argument("--rerank-k1", type=int, default=20, help="re-ranking k1")
    p.add_argument("--rerank-k2", type=int, default=6, help="re-ranking k2 (1: no query expansion)")
    p.add_argument("--rerank-lambda", type=float, default=0.3, help="re-ranking weight of the original distance")
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the synthetic data (default: the one the checkpoint was trained with)")
    p.add_argument("--json", help="also write the results to this JSON file")

    p = sub.add_parser("demo", help="train the paper's six ablation arms (Table 2) on synthetic data")
    p.add_argument("--out", default="demo_out")
    p.add_argument("--epochs", type=int, default=None, help="epochs per arm (default: the preset's)")
    p.add_argument("--preset", choices=("demo", "tiny", "large"), default="demo",
                   help="demo: <= 3 minutes on 2 CPU cores; tiny: seconds (smoke test); large: for GPUs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", dest="progress", action="store_false")

    p = sub.add_parser("plot", help="draw a training run's curves (loss terms, lr, rank-1, mAP) as a PNG")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a `mag-mmt train --out` folder (its history.csv or .json)")
    p.add_argument("--out", default=None, help="the PNG to write (default: RUN_DIR/curves.png)")

    p = sub.add_parser("convert-checkpoint", help="rewrite an old-format (mag-mmt/1) checkpoint in the safe format",
                       description="Rewrite a mag-mmt/1 checkpoint as mag-mmt/2 (tensors and plain data only, "
                       "loaded without running code). Files holding only numpy arrays besides tensors convert "
                       "safely; anything else is read only with --trust-source.")
    p.add_argument("src", help="the old checkpoint")
    p.add_argument("dst", help="the new checkpoint to write")
    p.add_argument("--trust-source", action="store_true",
                   help="read SRC with weights_only=False if it needs it: runs any code it carries")
    p.add_argument("--force", action="store_true", help="overwrite DST")

    p = sub.add_parser("pretrain", help="MMGL self-supervised pre-training (no labels)")
    _data_args(p)
    p.add_argument("--model", choices=("dual-swin", "small-cnn"), default="small-cnn")
    p.add_argument("--share-point", default="F3", choices=("F1", "F2", "F3", "F4", "F5"))
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32, help="RGB-IR pairs per step")
    p.add_argument("--steps-per-epoch", type=int, default=None, help="default: one pass over the images")
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default="adamw")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--grid", type=_pair(int), default=(2, 2), metavar="GH,GW",
                   help="jigsaw grid (tiles per column, per row)")
    p.add_argument("--num-permutations", type=int, default=24, help="size of the fixed permutation set")
    p.add_argument("--local-weight", type=float, default=1.0, help="weight of the patch InfoNCE")
    p.add_argument("--temperature", type=float, default=0.1, help="InfoNCE temperature")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default="runs/pretrain")
    p.add_argument("--resume", action="store_true", help="continue from OUT/pretrain.pt (same settings)")
    p.add_argument("--no-progress", dest="progress", action="store_false")

    p = sub.add_parser("ablation", help="train arms (B, +MAG, +MMT, ...) over seeds; table with paired tests")
    _train_args(p)
    from .ablation import add_arguments

    add_arguments(p)
    for command in sub.choices.values():  # --debug also after the command; SUPPRESS keeps the global value
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    return parser


def _check_data_args(args: argparse.Namespace) -> None:
    from .training import check_data_source

    check_data_source(args.data, args.root)


def cmd_train(args: argparse.Namespace) -> int:
    from . import training

    cfg = train_config(args)
    cfg.validate()
    if args.dry_run:
        from .recipes import RECIPES

        flags = {ARG_FIELDS.get(k, k) for k, v in vars(args).items() if v is not None}
        recipe = RECIPES.get(cfg.recipe or "", {})
        sources = {name: "flag" if name in flags else recipe[name][1] if name in recipe else "default"
                   for name in cfg.to_dict() if name != "recipe"}
        print(json.dumps({"recipe": cfg.recipe, "config": cfg.to_dict(), "sources": sources}, indent=2))
        return 0
    if cfg.recipe and cfg.model != "small-cnn" and not cfg.pretrained and not cfg.init:
        print(f"mag-mmt: warning: --recipe {cfg.recipe} starts from ImageNet weights in its source; "
              "pass --pretrained FILE (a local torchvision file) to match it", file=sys.stderr)
    training.train_and_evaluate(cfg, resume_hint=lambda world: resume_command(getattr(args, "argv", None), world))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .runlog import plot_run

    path, n_rows = plot_run(args.run_dir, args.out)
    print(f"wrote {path} ({n_rows} history rows)")
    return 0


def resume_command(argv: Sequence[str] | None, world: int = 1) -> str:
    """The command that continues a ``train`` run given by ``argv``: ``--max-steps`` dropped,
    ``--resume`` added (``torchrun`` in front for several processes).

    >>> resume_command(["train", "--out", "runs/a b", "--max-steps", "5"])
    "mag-mmt train --out 'runs/a b' --resume"
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--max-steps":
            skip = True
        elif not arg.startswith("--max-steps="):
            kept.append(arg)
    if "--resume" not in kept:
        kept.append("--resume")
    prog = "mag-mmt" if world == 1 else f"torchrun --nproc_per_node {world} -m mag_mmt.cli"
    return f"{prog} {shlex.join(kept)}"


def cmd_convert(args: argparse.Namespace) -> int:
    from .checkpoint import CheckpointError, convert_legacy_checkpoint

    if Path(args.dst).exists() and not args.force:
        raise CLIError(f"{args.dst!r} exists; choose another file or pass --force")
    if args.trust_source:
        print(f"mag-mmt: warning: --trust-source: reading {args.src!r} may run code it carries", file=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # said above
        try:
            path = convert_legacy_checkpoint(args.src, args.dst, trust_source=args.trust_source)
        except CheckpointError as exc:
            raise CLIError(str(exc)) from None
    print(f"wrote {path} (format mag-mmt/2)")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .training import evaluate_checkpoint

    if args.data is not None:
        _check_data_args(args)
    if not Path(args.checkpoint).is_file():
        raise CLIError(f"checkpoint {args.checkpoint!r} does not exist")
    if args.trials < 1:
        raise CLIError("--trials must be >= 1")
    if args.gallery_sampling == "agw" and args.full:
        raise CLIError("--gallery-sampling agw draws AGW's single-shot galleries and AGW has no "
                       "multi-shot gallery; drop --full (or run --full without it)")
    rerank = None
    if args.rerank:
        from .evaluation import ReRanking

        try:
            rerank = ReRanking(args.rerank_k1, args.rerank_k2, args.rerank_lambda)
        except ValueError as exc:
            raise CLIError(str(exc).replace("re-ranking ", "--rerank-").replace("lambda_value", "lambda")) from None
    evaluate_checkpoint(args.checkpoint, device=args.device, data=args.data, root=args.root, seed=args.seed,
                        synthetic_preset=args.synthetic_preset, regdb_trial=args.regdb_trial, img_size=args.img_size,
                        protocol=args.protocol, trials=args.trials, flip=args.flip, full=args.full,
                        distance=args.distance, gallery_sampling=args.gallery_sampling, rerank=rerank,
                        json_path=args.json)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    if args.epochs is not None and args.epochs < 1:
        raise CLIError("--epochs must be >= 1")
    run_demo(args.out, preset=args.preset, epochs=args.epochs, seed=args.seed, device=args.device,
             progress=args.progress)
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from .training import run_pretraining

    _check_data_args(args)
    if args.epochs < 1 or args.batch_size < 2:
        raise CLIError("--epochs must be >= 1 and --batch-size >= 2")
    if min(args.grid) < 1 or args.grid[0] * args.grid[1] < 2:
        raise CLIError(f"--grid must have at least 2 tiles, got {args.grid}")
    if math.factorial(args.grid[0] * args.grid[1]) < args.num_permutations or args.num_permutations < 2:
        raise CLIError(f"--num-permutations must be in [2, {math.factorial(args.grid[0] * args.grid[1])}] "
                       f"for a {args.grid[0]}x{args.grid[1]} grid")
    cfg = TrainConfig(data=args.data, root=args.root, synthetic_preset=args.synthetic_preset or "demo",
                      regdb_trial=args.regdb_trial, img_size=args.img_size, model=args.model,
                      share_point=args.share_point, seed=args.seed, device=args.device, out=args.out,
                      num_workers=args.workers, resume=args.resume)
    path = run_pretraining(cfg, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                           optimizer=args.optimizer, grid=tuple(args.grid),
                           num_permutations=args.num_permutations, local_weight=args.local_weight,
                           temperature=args.temperature, steps_per_epoch=args.steps_per_epoch,
                           progress=args.progress)
    print(f"wrote {path}; fine-tune with: mag-mmt train --init {path} ...")
    return 0


def cmd_ablation(args: argparse.Namespace) -> int:
    from .ablation import run_from_args

    base = train_config(args)
    for name in ("seed", "progress", "out"):  # train flags not given are None (recipes): the resolved values
        if getattr(args, name) is None:
            setattr(args, name, getattr(base, name))
    run_from_args(args, base)  # UserError: printed by main()
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "demo": cmd_demo, "pretrain": cmd_pretrain,
            "ablation": cmd_ablation, "plot": cmd_plot, "convert-checkpoint": cmd_convert}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    A :class:`~mag_mmt.errors.UserError` (bad data, arguments or checkpoint) is printed as
    the usage line and ``mag-mmt: error: <message>`` and exits with status 2 (``SystemExit``,
    as argparse does); ``--debug`` prints its traceback first. Other exceptions propagate
    with their traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        if args.debug:
            traceback.print_exc()
        parser.error(str(exc))  # usage + "mag-mmt: error: ...", exit status 2
    return 0


if __name__ == "__main__":  # pragma: no cover - ``python -m mag_mmt.cli`` (torchrun)
    sys.exit(main())
