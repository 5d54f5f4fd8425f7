"""Resuming: refused, with the differing fields named, when the run is not the same one; the
``--max-steps`` stop says where the checkpoint is and how to resume; epoch lengths."""

from __future__ import annotations

import math
import shlex
from pathlib import Path

import pytest

from mag_mmt.training import loop
from mag_mmt.checkpoint import load_checkpoint
from mag_mmt.cli import main, resume_command
from mag_mmt.data.synthetic import make_synthetic
from mag_mmt.training import TrainConfig, config_differences, train
from mag_mmt.errors import UserError
from tests.train_helpers import small_cfg as _cfg, small_data


@pytest.fixture(scope="module")
def data():
    return small_data()


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("stopped")
    train(_cfg(out, max_steps=1), data=data, log=None)
    return out


CHANGES = [
    ({"model": "dual-swin", "img_size": (32, 32)}, ["model", "img_size"]),
    ({"share_point": "F1"}, ["share_point"]),
    ({"num_identities": 3}, ["num_identities"]),
    ({"num_instances": 3}, ["num_instances"]),
    ({"synthetic_kwargs": {"num_identities": 20}}, ["synthetic_kwargs"]),
    ({"data": "regdb", "root": "/data/RegDB", "regdb_trial": 2}, ["data", "root", "regdb_trial"]),
    ({"loss": "batch-hard", "margin": 0.5}, ["loss", "margin"]),
    ({"lr": 0.1, "seed": 6}, ["lr", "seed"]),
    ({"epoch_unit": "identities"}, ["epoch_unit"]),
]


@pytest.mark.parametrize("change, fields", CHANGES)
def test_resume_refuses_another_configuration_before_any_work(stopped_run, data, monkeypatch, change, fields):
    def no_data(_cfg):
        raise AssertionError("data loaded before the configuration was checked")

    monkeypatch.setattr(loop, "load_data", no_data)
    monkeypatch.setattr(TrainConfig, "validate", lambda self: None)  # regdb root need not exist here
    with pytest.raises(UserError) as exc:
        train(_cfg(stopped_run, resume=True, **change), log=None)
    message = str(exc.value)
    assert str(stopped_run / "last.pt") in message and "--init" in message
    for name in fields:
        assert f"{name}: " in message, (name, message)
    assert load_checkpoint(stopped_run / "last.pt")["step"] == 1  # untouched


def test_resume_refuses_other_data_under_the_same_configuration(stopped_run):
    other = make_synthetic("demo", num_identities=14, num_train_identities=7, images_per_camera=2, seed=3)
    with pytest.raises(UserError, match=r"num_classes: 6 -> 7; num_train_images: 72 -> 84.*dataset changed"):
        train(_cfg(stopped_run, resume=True), data=other, log=None)


def test_what_may_change_on_resume():
    base = _cfg(Path("a"))
    same = _cfg(Path("b"), epochs=9, max_steps=3, checkpoint_every=2, eval_every=1, eval_trials=2, device="cuda",
                amp=False, progress=True, num_workers=4, resume=True, init="x.pt", pretrained="y.pth")
    assert config_differences(base, same) == []
    assert config_differences(_cfg(Path("a"), root="data/../data/x"), _cfg(Path("a"), root="data/x")) == []
    assert config_differences(base, _cfg(Path("a"), mag=False)) == ["mag: True -> False"]


def test_cli_resume_against_another_configuration(stopped_run, capsys):
    argv = ["train", "--resume", "--out", str(stopped_run), "--epochs", "2", "--steps-per-epoch", "2",
            "-P", "3", "-K", "2", "--seed", "5", "--no-progress", "--device", "cpu", "--mag-p", "0.7"]
    try:
        main(argv)
    except SystemExit as exc:
        assert exc.code == 2
        message = capsys.readouterr().err
    except UserError as exc:  # until the CLI prints every UserError itself
        message = str(exc)
    else:
        raise AssertionError("resumed against another configuration")
    assert "num_identities: 2 -> 3" in message


@pytest.mark.slow
def test_max_steps_says_where_the_checkpoint_is_and_how_to_resume(tmp_path, capsys, monkeypatch):
    # the final evaluation is not what this test is about: a cheap stand-in keeps it short
    monkeypatch.setattr(loop, "evaluate_model", lambda *a, **k: {"rank1": 0.5, "mAP": 0.5, "mINP": 0.5, "setting": "stand-in"})
    out = tmp_path / "run dir"
    args = ["train", "--epochs", "2", "--steps-per-epoch", "2", "-P", "2", "-K", "2", "--out", str(out),
            "--no-progress", "--device", "cpu", "--max-steps", "3"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"checkpoint: {out / 'last.pt'}" in printed
    command = printed.split("resume with: ", 1)[1].strip()
    assert command == "mag-mmt " + shlex.join([a for a in args if a not in ("--max-steps", "3")] + ["--resume"])
    assert main(shlex.split(command)[1:]) == 0  # the printed command finishes the run
    assert "final: rank-1 50.00%" in capsys.readouterr().out
    assert load_checkpoint(out / "last.pt")["step"] == 4
    assert resume_command(["train", "--max-steps=5", "--resume"], world=2) == \
        "torchrun --nproc_per_node 2 -m mag_mmt.cli train --resume"


@pytest.mark.slow
def test_engine_epoch_length_in_images_by_default(tmp_path, data):
    """One epoch = one pass over the larger modality's training images (4 visible cameras x 2
    images vs 2 thermal x 2 here), ``ceil(max(n_v, n_t) / (P * K))`` steps; the switch gives
    ``ceil(C / P)``."""
    n_visible = sum(s.modality == 0 for s in data.train)
    n_thermal = sum(s.modality == 1 for s in data.train)
    assert n_visible != n_thermal
    run = train(_cfg(tmp_path / "images", epochs=1, steps_per_epoch=None, num_identities=3), data=data, log=None)
    assert run.history[0]["steps"] == math.ceil(max(n_visible, n_thermal) / (3 * 2)) == 8
    run = train(_cfg(tmp_path / "ids", epochs=1, steps_per_epoch=None, num_identities=3, epoch_unit="identities"),
                data=data, log=None)
    assert run.history[0]["steps"] == math.ceil(data.num_train_identities / 3) == 2
    with pytest.raises(ValueError, match="epoch_unit"):
        train(_cfg(tmp_path / "bad", epoch_unit="batches"), data=data, log=None)


def test_demo_budgets_unchanged():
    """The demo presets keep the step counts they were sized with (the per-identity epoch)."""
    from mag_mmt.data.sampler import CrossModalityIdentitySampler
    from mag_mmt.demo import PRESETS

    for name, spec in PRESETS.items():
        if spec.steps_per_epoch is None:
            assert spec.epoch_unit == "identities", name
            train_data = make_synthetic(spec.synthetic, seed=0)
            sampler = CrossModalityIdentitySampler(train_data.train, num_identities=spec.num_identities_per_batch,
                                                   num_instances=spec.num_instances, epoch_unit=spec.epoch_unit)
            assert len(sampler) == math.ceil(train_data.num_train_identities / spec.num_identities_per_batch)


def test_eval_every_also_evaluates_the_last_epoch(tmp_path):
    """Epochs 2 and 3 of 3 with eval_every=2: the final model is always a candidate (AGW evaluates
    its last epoch too), so a validation-selected best.pt can be the final weights."""
    result = train(_cfg(tmp_path, epochs=3, eval_every=2, eval_trials=1), data=small_data(), log=None)
    assert [row["epoch"] for row in result.history if "rank1" in row] == [2, 3]
