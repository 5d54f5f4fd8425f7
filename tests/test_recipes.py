"""Named recipes (``--recipe``), the batched pipeline in the trainer, the ADP loss and
model selection on a validation split (never the test set)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mag_mmt import training
from mag_mmt.checkpoint import load_checkpoint
from mag_mmt.cli import build_parser, train_config
from mag_mmt.data.records import ReIDData, Sample
from mag_mmt.training import TrainConfig, lr_at, split_validation, train
from mag_mmt.errors import UserError
from mag_mmt.losses import adaptive_weighted_triplet_loss
from mag_mmt.recipes import RECIPES, recipe_table, resolve_recipe

ROOT = Path(__file__).resolve().parents[1]


def parse(*argv: str) -> TrainConfig:
    return train_config(build_parser().parse_args(["train", *argv]))


# --------------------------------------------------------------------------- the table


def test_docs_table_is_the_recipes_table():
    text = (ROOT / "docs" / "recipes.md").read_text()
    assert recipe_table() in text
    # and each row of the docs names every recipe's value and source
    for name, fields in RECIPES.items():
        for field, (_value, source) in fields.items():
            assert source in text, (name, field)


def test_every_recipe_sets_the_same_known_fields_with_sources():
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    names = list(RECIPES)
    for name in names:
        assert set(RECIPES[name]) == set(RECIPES[names[0]])
        assert set(RECIPES[name]) <= known
        for field, (_value, source) in RECIPES[name].items():
            # a file and line, the paper, or marked as ours
            assert source.startswith("ours") or "paper" in source or (":" in source and ".py" in source or ".sh" in source), (name, field)
        resolve_recipe(name).validate()
    # the fields the issue lists are all covered
    assert {"model", "share_point", "img_size", "augment", "visible_views", "num_identities", "num_instances",
            "optimizer", "lr", "backbone_lr_mult", "warmup_epochs", "milestones", "epochs", "epoch_unit",
            "loss", "test_feature"} <= set(RECIPES["agw"])


def test_recipe_values_are_the_sources():
    agw, caj, paper = (resolve_recipe(n) for n in ("agw", "caj", "paper"))
    assert (agw.model, agw.share_point, agw.img_size, agw.pad, agw.num_identities, agw.num_instances) == \
        ("dual-resnet50", "stem", (288, 144), 10, 8, 4)
    assert (agw.lr, agw.backbone_lr_mult, agw.milestones, agw.epochs, agw.loss, agw.mag) == \
        (0.1, 0.1, (20, 50), 81, "wrt", False)
    assert (caj.loss, caj.visible_views, caj.erase_p, caj.channel_exchange, caj.adaptive_gray_p, caj.epochs) == \
        ("adp", 2, 0.5, True, 0.5, 100)
    assert (paper.model, paper.share_point, paper.img_size, paper.lr, paper.momentum, paper.weight_decay) == \
        ("dual-swin", "F3", (224, 224), 0.01, 0.9, 5e-4)
    assert paper.loss == "mmt" and paper.mag
    for field in ("epochs", "milestones", "warmup_epochs", "num_instances"):
        assert RECIPES["paper"][field][1].startswith("ours"), field


def _agw_adjust_learning_rate(base: float, epoch: int) -> tuple[float, float]:
    """AGW ``train.py`` ``adjust_learning_rate`` as written there: (backbone, head) lr."""
    if epoch < 10:
        lr = base * (epoch + 1) / 10
    elif 10 <= epoch < 20:
        lr = base
    elif 20 <= epoch < 50:
        lr = base * 0.1
    else:
        lr = base * 0.01
    return 0.1 * lr, lr


@pytest.mark.parametrize("name", ["agw", "caj"])
def test_schedule_is_agw_adjust_learning_rate(name):
    cfg = resolve_recipe(name)
    model = training.build_model_for(dataclasses.replace(cfg, model="small-cnn", share_point="F3"), 5)
    groups = training.param_groups(cfg, model)
    head_ids = {id(p) for n, p in model.named_parameters() if n.startswith("head.")}
    assert {id(p) for p in groups[1]["params"]} == head_ids
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(model.parameters()))
    for epoch in range(cfg.epochs):
        for step in (0, 7):
            want = _agw_adjust_learning_rate(cfg.lr, epoch)
            got = tuple(lr_at(cfg, epoch, step, 10) * g["lr_mult"] for g in groups)
            assert got == pytest.approx(want, rel=1e-12), epoch


def test_linear_warmup_and_the_factor_form():
    """Linear warm-up rises per step from 0.1 lr to lr; ``scheduled_lr(1.0, ...)`` is the factor a
    ``LambdaLR`` needs (the example's schedule), equal to ``lr_at / lr``; an unknown mode is refused."""
    from mag_mmt.schedule import scheduled_lr

    cfg = TrainConfig(lr=0.05, warmup_epochs=2, warmup_mode="linear", milestones=(3, 5))
    for epoch in range(7):
        for step in range(4):
            done = min(1.0, (epoch * 4 + step + 1) / 8)
            want = 0.05 * (0.1 + 0.9 * done) * 0.1 ** ((epoch >= 3) + (epoch >= 5))
            assert lr_at(cfg, epoch, step, 4) == pytest.approx(want, rel=1e-12)
            factor = scheduled_lr(1.0, epoch, step, 4, warmup_epochs=2, warmup_mode="linear", milestones=(3, 5))
            assert 0.05 * factor == pytest.approx(lr_at(cfg, epoch, step, 4), rel=1e-12)
    with pytest.raises(UserError, match="warmup_mode"):
        scheduled_lr(0.1, 0, warmup_mode="cosine")


# --------------------------------------------------------------------------- CLI: overrides, dry run


def test_no_recipe_keeps_todays_defaults():
    assert parse() == TrainConfig()
    assert parse("--lr", "0.2", "--share-point", "stem").lr == 0.2


def test_flags_override_single_fields():
    base = resolve_recipe("agw")
    cfg = parse("--recipe", "agw", "--lr", "0.05", "--epochs", "3", "-P", "2", "--no-non-local",
                "--test-feature", "pool", "--milestones", "1", "2", "--workers", "1")
    changed = {f: getattr(cfg, f) for f in cfg.to_dict() if getattr(cfg, f) != getattr(base, f)}
    assert changed == {"lr": 0.05, "epochs": 3, "num_identities": 2, "non_local": False, "test_feature": "pool",
                       "milestones": (1, 2), "num_workers": 1}
    assert parse("--recipe", "caj", "--no-channel-exchange").channel_exchange is False
    assert parse("--recipe", "paper", "--no-mag").mag is False


def test_bad_fields_are_user_errors():
    with pytest.raises(UserError, match="augment='reid'"):
        TrainConfig(erase_p=0.5).validate()
    with pytest.raises(UserError, match="share_point"):
        TrainConfig(share_point="F9").validate()
    with pytest.raises(UserError, match="val_identities"):
        TrainConfig(val_identities=2.5).validate()
    with pytest.raises(UserError, match="eval_every"):
        TrainConfig(val="holdout").validate()


def test_share_point_stem_is_the_stem_only():
    model = training.build_model_for(TrainConfig(model="small-cnn", share_point="stem"), 4)
    assert model.num_specific == 1
    assert training.build_model_for(TrainConfig(model="small-cnn", share_point="0"), 4).num_specific == 0


@pytest.mark.parametrize("name,lr_source", [("agw", "train.py:23"), ("caj", "train_ext.py:26"), ("paper", "paper")])
def test_dry_run_prints_each_sources_values(name, lr_source, capsys, tmp_path):
    from mag_mmt.cli import main

    assert main(["train", "--recipe", name, "--epochs", "5", "--out", str(tmp_path / "x"), "--dry-run"]) == 0
    assert not (tmp_path / "x").exists()  # nothing ran
    out = json.loads(capsys.readouterr().out)
    assert out["recipe"] == name
    for field, (value, source) in RECIPES[name].items():
        if field == "epochs":
            assert out["config"]["epochs"] == 5 and out["sources"]["epochs"] == "flag"
            continue
        assert out["config"][field] == (list(value) if isinstance(value, tuple) else value), field
        assert out["sources"][field] == source
    assert lr_source in out["sources"]["lr"]


# --------------------------------------------------------------------------- ADP


def _adp_reference(x, labels, alpha, gamma, square):
    """CAJ's TripletLoss_ADP, one anchor at a time, anchor not its own positive."""
    n, total, count = len(labels), 0.0, 0
    for a in range(n):
        pos = [j for j in range(n) if j != a and labels[j] == labels[a]]
        neg = [j for j in range(n) if labels[j] != labels[a]]
        if not pos or not neg:
            continue
        d = [math.dist(x[a], x[j]) for j in range(n)]

        def soft(idx, sign):
            m = max(sign * d[j] for j in idx)
            w = [math.exp(sign * d[j] - m) for j in idx]
            return sum(wi * d[j] for wi, j in zip(w, idx)) / sum(w)

        dp, dn = soft(pos, alpha), soft(neg, -alpha)
        if square:
            s = min(gamma * (dp - dn) ** 2, 88.0)
            z = s if dp > dn else -s
        else:
            z = gamma * (dp - dn)
        total += math.log1p(math.exp(-abs(z))) + max(z, 0.0)
        count += 1
    return total / max(count, 1)


@given(st.integers(2, 4), st.integers(1, 3), st.integers(0, 10_000), st.sampled_from([0.5, 1.0, 2.0]),
       st.sampled_from([1.0, 3.0]), st.booleans())
def test_adp_matches_a_per_anchor_reference(ids, per_id, seed, alpha, gamma, square):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(ids).repeat_interleave(per_id + 1)
    x = torch.randn(len(labels), 3, generator=g, dtype=torch.float64) * 2
    got = adaptive_weighted_triplet_loss(x, labels, alpha=alpha, gamma=gamma, square=square)
    want = _adp_reference(x.tolist(), labels.tolist(), alpha, gamma, square)
    assert float(got) == pytest.approx(want, rel=1e-5, abs=1e-6)


# --------------------------------------------------------------------------- trainer: pipeline, resume


SMALL_DATA = dict(num_identities=16, num_train_identities=10, images_per_camera=2, size=(32, 16))


def _small(tmp_path: Path, name: str, **kw) -> TrainConfig:
    base = dict(model="small-cnn", share_point="F3", img_size=(32, 16), num_identities=3, num_instances=2,
                steps_per_epoch=2, epochs=2, seed=3, out=str(tmp_path / name), progress=False, eval_every=0,
                val="none", milestones=(), warmup_epochs=1, synthetic_kwargs=SMALL_DATA)
    return resolve_recipe("caj", {**base, **kw})


@pytest.mark.slow
def test_caj_pipeline_trains_three_views_and_resumes_exactly(tmp_path):
    straight = train(_small(tmp_path, "a"), log=None)
    cfg = _small(tmp_path, "b", max_steps=3)  # stops mid-epoch 2
    first = train(cfg, log=None)
    assert first.stopped_early
    state = load_checkpoint(tmp_path / "b" / "last.pt", kind="train")
    assert state["rng"]["ranks"][0]["augment"] is not None  # the pipeline's generator state
    resumed = train(_small(tmp_path, "b", resume=True), log=None)
    for (k, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k


# --------------------------------------------------------------------------- selection on validation


class SpyLoader:
    def __init__(self, loader):
        self.loader, self.paths = loader, []

    def __call__(self, sample):
        self.paths.append(sample.path)
        return self.loader(sample)


def test_best_checkpoint_is_chosen_on_validation_without_reading_the_test_set(tmp_path):
    from mag_mmt.data.synthetic import make_synthetic

    data = make_synthetic("demo", seed=0, **SMALL_DATA)
    spy = SpyLoader(data.loader)
    data = dataclasses.replace(data, loader=spy)
    test_paths = {s.path for s in data.query + data.gallery}
    cfg = _small(tmp_path, "sel", epochs=4, eval_every=1, val="holdout", val_identities=3, select_metric="mAP")
    result = train(cfg, data=data, log=None)
    assert not test_paths & set(spy.paths), "the test set was read during training"
    rows = result.history
    assert all("val_mAP" in r and "mAP" not in r for r in rows)
    best_epoch = max(range(len(rows)), key=lambda i: (rows[i]["val_mAP"], -i)) + 1
    assert result.selection == {"metric": "val_mAP", "value": rows[best_epoch - 1]["val_mAP"], "epoch": best_epoch}
    best = load_checkpoint(tmp_path / "sel" / "best.pt", kind="train")
    assert best["epoch"] == best_epoch and best["selection"]["epoch"] == best_epoch
    model, _, _ = training.model_from_checkpoint(str(tmp_path / "sel" / "best.pt"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, best["model"][k])
    # the held-out identities are not trained on, and their images were read for validation
    assert result.data.num_train_identities == data.num_train_identities - 3
    train_paths = {s.path for s in result.data.train}
    assert set(spy.paths) - train_paths


def _fake(train, meta):
    return ReIDData("x", train, [], [], loader=None, meta=meta)


def test_split_validation_uses_sysu_val_ids_and_manifest_rows():
    samples = [Sample(f"{lab}_{m}", lab, 1 + 2 * m, m) for lab in range(5) for m in (0, 1)]
    sysu = _fake(samples, {"train_id_map": {10: 0, 11: 1, 12: 2, 13: 3, 14: 4}, "val_ids": [11, 14]})
    data, query, gallery = split_validation(TrainConfig(val="auto"), sysu)
    assert {s.identity for s in query} == {1, 4} and all(s.modality == 1 for s in query)
    assert {s.identity for s in gallery} == {1, 4} and all(s.modality == 0 for s in gallery)
    assert sorted({s.identity for s in data.train}) == [0, 1, 2]
    assert data.meta["train_id_map"] == {10: 0, 12: 1, 13: 2}
    val_rows = [Sample("v0", 99, 3, 1), Sample("v1", 99, 1, 0)]
    data, query, gallery = split_validation(TrainConfig(val="dataset"), _fake(samples, {"val": val_rows}))
    assert query == val_rows[:1] and gallery == val_rows[1:] and len(data.train) == len(samples)
    with pytest.raises(UserError, match="no validation split"):
        split_validation(TrainConfig(val="dataset"), _fake(samples, {}))
    data, query, _ = split_validation(TrainConfig(val="auto", val_identities=0.4), _fake(samples, {}))
    assert data.num_train_identities == 3 and len({s.identity for s in query}) == 2
    with pytest.raises(UserError, match="fewer than 2"):
        split_validation(TrainConfig(val="holdout", val_identities=4), _fake(samples, {}))


# --------------------------------------------------------------------------- the done-when check


@pytest.mark.slow
@pytest.mark.parametrize("name", ["agw", "caj", "paper"])
def test_recipe_trains_two_steps_on_cpu(tmp_path, name):
    """``mag-mmt train --recipe NAME --data synthetic --max-steps 2`` with P, K and the image
    size shrunk. Two steps stop inside the first epoch, so only training runs (a ResNet-50 or
    Swin-T from random weights is not evaluated after 2 steps)."""
    cmd = [sys.executable, "-m", "mag_mmt.cli", "train", "--recipe", name, "--data", "synthetic", "--max-steps", "2",
           "-P", "2", "-K", "2", "--img-size", "64,32", "--device", "cpu", "--out", str(tmp_path / name), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "stopped after 2 steps" in proc.stdout
    state = load_checkpoint(tmp_path / name / "last.pt", kind="train")
    assert state["step"] == 2 and state["config"]["recipe"] == name
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


@pytest.mark.slow
def test_cli_reports_last_and_selected_checkpoint(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "mag_mmt.cli", "train", "--data", "synthetic", "--val", "holdout", "--val-identities", "3",
           "--eval-every", "1", "--epochs", "2", "--steps-per-epoch", "2", "-P", "3", "-K", "2", "--img-size", "32,16",
           "--device", "cpu", "--out", str(out), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "history.json").read_text())
    sel = report["selected"]
    assert sel["metric"] == "val_rank1" and sel["epoch"] in (1, 2)
    assert sel["value"] == max(r["val_rank1"] for r in report["history"])
    assert {"rank1", "mAP", "mINP"} <= set(sel["test"]) and {"rank1", "mAP"} <= set(report["final"])
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()
    assert "selected (epoch" in proc.stdout and "final:" in proc.stdout
