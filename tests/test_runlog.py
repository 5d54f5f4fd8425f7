"""Training logs: history.csv/.json rows, resume without duplicates, TensorBoard events,
the training-curve PNG and ``mag-mmt plot``."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from mag_mmt.cli import main
from mag_mmt.training import TrainConfig, train
from mag_mmt.errors import UserError
from mag_mmt.runlog import COLUMNS, RunLog, read_history
from mag_mmt.visualize import plot_training_curves
from tests.train_helpers import small_cfg, small_data


@pytest.fixture(scope="module")
def data():
    return small_data()


def _cfg(out: Path, **kw) -> TrainConfig:
    return small_cfg(out, **{"steps_per_epoch": 3, "log_every": 2, "mag_p": 0.5, **kw})


def _csv_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _check_png(path: Path, min_size: tuple[int, int] = (300, 190)) -> None:
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape[0] >= min_size[1] and img.shape[1] >= min_size[0]
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 3  # lines, text and background, not a blank


@pytest.mark.slow
def test_train_writes_history_tensorboard_and_curves(tmp_path, data):
    out = tmp_path / "run"
    result = train(_cfg(out, eval_every=1, eval_trials=1), data=data, log=None)
    header, raw = _csv_rows(out / "history.csv")
    assert header == list(COLUMNS)
    rows = read_history(out)
    assert [(r["kind"], r["step"], r["epoch"]) for r in rows] == [
        ("step", 2, 1), ("step", 3, 1), ("epoch", 3, 1), ("step", 4, 2), ("step", 6, 2), ("epoch", 6, 2)]
    steps = [r["step"] for r in rows]
    assert steps == sorted(steps)
    assert json.loads((out / "history.json").read_text())["rows"] == rows  # the JSON holds the same rows
    for r in rows:
        if r["kind"] == "step":  # MMT's parts, per row: triplet = MMAN + pos_weight * MMAP (pos_weight 1)
            assert set(r) == {"kind", "step", "epoch", "loss", "id_loss", "triplet_loss", "mman", "mmap", "lr"}
            assert r["triplet_loss"] == pytest.approx(r["mman"] + r["mmap"], rel=1e-5)
            assert r["loss"] == pytest.approx(r["id_loss"] + r["triplet_loss"], rel=1e-5)
            assert r["lr"] == pytest.approx(0.01)
    epochs = [r for r in rows if r["kind"] == "epoch"]
    for r, h in zip(epochs, result.history):  # the epoch rows are the engine's history
        assert r["loss"] == pytest.approx(h["loss"], rel=1e-6) and r["rank1"] == pytest.approx(h["rank1"], rel=1e-6)
    assert json.loads((out / "history.json").read_text())["history"] == result.history  # every field, cmc too
    # epoch 1's mean is the mean of its step rows weighted by their steps (2 and 1)
    assert epochs[0]["id_loss"] == pytest.approx((2 * rows[0]["id_loss"] + rows[1]["id_loss"]) / 3, rel=1e-5)
    scalars = _scalars(out / "tensorboard")
    for tag in ("train/loss", "train/id_loss", "train/mman", "train/mmap", "train/lr", "eval/rank1", "eval/mAP"):
        assert tag in scalars, tag
    assert [s for s, _ in scalars["train/mman"]] == [2, 3, 4, 6]
    assert [v for _, v in scalars["train/mmap"]] == pytest.approx([r["mmap"] for r in rows if r["kind"] == "step"])
    assert [s for s, _ in scalars["eval/rank1"]] == [3, 6]
    _check_png(out / "curves.png", (800, 800))  # 8 panels: 4 rows of 2, legend beside


@pytest.mark.slow
def test_resume_continues_history_without_duplicates(tmp_path, data):
    from torch.utils.tensorboard import SummaryWriter

    straight = tmp_path / "straight"
    train(_cfg(straight), data=data, log=None)
    run = tmp_path / "run"
    first = train(_cfg(run, max_steps=4), data=data, log=None)
    assert first.stopped_early
    assert [r["step"] for r in read_history(run)] == [2, 3, 3, 4]  # flushed at the stop (the checkpoint)
    # a killed run may have logged past its last checkpoint: a CSV row and an event at step 5
    with open(run / "history.csv", "a", newline="") as f:
        csv.DictWriter(f, COLUMNS).writerow({"kind": "step", "step": 5, "epoch": 2, "loss": 99.0})
    with SummaryWriter(str(run / "tensorboard")) as writer:
        writer.add_scalar("train/loss", 99.0, 5)
    assert 5 in [s for s, _ in _scalars(run / "tensorboard")["train/loss"]]
    resumed = train(_cfg(run, resume=True), data=data, log=None)
    assert json.loads((run / "history.json").read_text())["history"] == resumed.history
    rows, expected = read_history(run), read_history(straight)
    assert [(r["kind"], r["step"]) for r in rows] == [(r["kind"], r["step"]) for r in expected]
    for r, e in zip(rows, expected):
        if r["kind"] == "step":  # resuming gives the weights of the run never stopped: the same losses
            for key in ("loss", "id_loss", "triplet_loss", "mman", "mmap", "lr"):
                assert r[key] == pytest.approx(e[key], rel=1e-5), (r["step"], key)
    loss = _scalars(run / "tensorboard")["train/loss"]
    assert [s for s, _ in loss] == [2, 3, 4, 6]  # the stale step-5 event is purged
    assert [v for _, v in loss] == pytest.approx([r["loss"] for r in rows if r["kind"] == "step"])


@pytest.mark.slow
def test_cli_train_adds_final_row_and_plot_redraws(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--steps-per-epoch", "3", "-P", "2", "-K", "2", "--log-every", "2",
                 "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    rows = read_history(out)
    assert [(r["kind"], r["step"]) for r in rows] == [("step", 2), ("step", 3), ("epoch", 3), ("final", 3)]
    history = json.loads((out / "history.json").read_text())
    assert history["final"]["rank1"] == pytest.approx(rows[-1]["rank1"], rel=1e-6)
    assert [s for s, _ in _scalars(out / "tensorboard")["eval/rank1"]] == [3]
    (out / "curves.png").unlink()
    capsys.readouterr()
    assert main(["plot", str(out)]) == 0
    assert "curves.png" in capsys.readouterr().out
    _check_png(out / "curves.png")
    assert main(["plot", str(out), "--out", str(tmp_path / "other.png")]) == 0
    _check_png(tmp_path / "other.png")


def test_cli_plot_errors_clearly_without_history(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["plot", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "no history.csv or history.json" in err and str(tmp_path) in err
    with pytest.raises(SystemExit):
        main(["plot", str(tmp_path / "missing")])
    assert "is not a folder" in capsys.readouterr().err


# --------------------------------------------------------------------------- RunLog without training


@given(st.lists(st.floats(0.0, 10.0, width=32), min_size=1, max_size=25), st.integers(1, 6),
       st.integers(0, 30), st.booleans())
def test_step_rows_are_the_means_of_their_steps(tmp_path_factory, losses, every, start, parts):
    """Rows every ``every``-th step (plus one at the end) hold the means of the steps since the
    previous row: checked against an explicit loop over the steps."""
    out = tmp_path_factory.mktemp("log")
    log = RunLog(out, every=every, tensorboard=False)
    mmt = type("Parts", (), {})()
    for i, value in enumerate(losses):
        step = start + i + 1
        x = torch.tensor(value)
        mmt.mman, mmt.mmap = 0.25 * x, 0.5 * x
        log.step(step, 1, 0.1 * step, x, 2 * x, 3 * x, mmt if parts else None)
    log.close(plot=False)
    expected, chunk = [], []
    for i, value in enumerate(losses):  # reference: explicit chunks
        step = start + i + 1
        chunk.append(value)
        if step % every == 0 or i == len(losses) - 1:
            expected.append((step, sum(chunk) / len(chunk), 0.1 * step))
            chunk = []
    rows = read_history(out)
    assert [r["step"] for r in rows] == [s for s, _, _ in expected]
    for r, (_, mean, lr) in zip(rows, expected):
        assert r["loss"] == pytest.approx(mean, rel=1e-5, abs=1e-6)
        assert r["triplet_loss"] == pytest.approx(3 * mean, rel=1e-5, abs=1e-6)
        assert r["lr"] == pytest.approx(lr, rel=1e-6)
        assert ("mmap" in r) == parts and (not parts or r["mmap"] == pytest.approx(0.5 * mean, rel=1e-5, abs=1e-6))


def test_step_adds_no_host_sync_until_a_row(tmp_path):
    """Between rows ``step`` only adds device tensors: reading them (``tolist``) happens at the row."""
    log = RunLog(tmp_path, every=4, tensorboard=False)
    calls = []
    real = torch.Tensor.tolist

    def spy(self):
        calls.append(1)
        return real(self)

    torch.Tensor.tolist = spy
    try:
        for step in range(1, 4):
            log.step(step, 1, 0.1, torch.tensor(1.0), torch.tensor(1.0), torch.tensor(0.0))
        assert calls == [] and read_history(tmp_path) == []
        log.step(4, 1, 0.1, torch.tensor(1.0), torch.tensor(1.0), torch.tensor(0.0))
        assert calls == [1] and len(read_history(tmp_path)) == 1
    finally:
        torch.Tensor.tolist = real


@pytest.mark.gpu
def test_step_on_cuda_does_not_synchronise_between_rows(tmp_path):
    log = RunLog(tmp_path, every=3, tensorboard=False)
    x = torch.rand(5, device="cuda")
    parts = type("Parts", (), {"mman": x[3], "mmap": x[4]})()
    log.step(3, 1, 0.1, x[0], x[1], x[2], parts)  # a row: warm-up, kernels
    torch.cuda.set_sync_debug_mode("error")
    try:
        log.step(4, 1, 0.1, x[0], x[1], x[2], parts)
        log.step(5, 1, 0.1, x[0], x[1], x[2], parts)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    log.close(plot=False)
    rows = read_history(tmp_path)
    assert [r["step"] for r in rows] == [3, 5]
    assert rows[1]["mmap"] == pytest.approx(float(x[4]), rel=1e-5)


def test_resume_truncates_rows_after_the_checkpoint_step(tmp_path):
    log = RunLog(tmp_path, every=1, tensorboard=False)
    for step in range(1, 6):
        log.step(step, 1, 0.1, torch.tensor(float(step)), torch.tensor(0.0), torch.tensor(0.0))
    log.epoch(5, {"epoch": 1, "loss": 3.0, "cmc": [0.1, 0.2]})  # lists are not CSV cells
    log.close(plot=False)
    RunLog(tmp_path, start_step=3, tensorboard=False).close(plot=False)
    assert [r["step"] for r in read_history(tmp_path)] == [1, 2, 3]
    assert [r["step"] for r in json.loads((tmp_path / "history.json").read_text())["rows"]] == [1, 2, 3]
    RunLog(tmp_path, start_step=0, tensorboard=False).close(plot=False)  # a new run starts a new file
    assert read_history(tmp_path) == []


def test_without_tensorboard_only_csv_and_json(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    log = RunLog(tmp_path, every=1)
    log.step(1, 1, 0.1, torch.tensor(1.0), torch.tensor(1.0), torch.tensor(0.0))
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "history.csv", "history.json"]


def test_disabled_log_writes_nothing(tmp_path):
    log = RunLog(tmp_path / "rank1", enabled=False)
    log.step(1, 1, 0.1, torch.tensor(1.0), torch.tensor(1.0), torch.tensor(0.0))
    log.epoch(1, {"epoch": 1, "loss": 1.0})
    log.close()
    assert not (tmp_path / "rank1").exists()


def test_read_history_errors_name_the_file_and_line(tmp_path):
    (tmp_path / "history.csv").write_text("kind,step,loss\nstep,1,0.5\nstep,2,abc\n")
    with pytest.raises(UserError, match=r"history\.csv, line 3: column 'loss' holds 'abc'"):
        read_history(tmp_path)
    (tmp_path / "history.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="not a mag-mmt history"):
        read_history(tmp_path)


def test_read_history_of_an_older_run_json(tmp_path):
    """Runs from before history.csv wrote ``{"history": [epoch rows], "final": {...}}``."""
    (tmp_path / "history.json").write_text(json.dumps(
        {"history": [{"epoch": 1, "loss": 2.0, "steps": 3}, {"epoch": 2, "loss": 1.5}],
         "final": {"rank1": 0.5, "mAP": 0.4, "cmc": [0.5]}}))
    rows = read_history(tmp_path)
    assert rows == [{"kind": "epoch", "epoch": 1, "loss": 2.0}, {"kind": "epoch", "epoch": 2, "loss": 1.5},
                    {"kind": "final", "epoch": 2, "rank1": 0.5, "mAP": 0.4}]
    _check_png(plot_training_curves(rows, tmp_path / "c.png"))


def test_plot_training_curves_panels_and_errors(tmp_path):
    rows = [{"kind": "step", "step": s, "loss": 1.0 / s, "lr": 0.01} for s in range(1, 30)]
    one = plot_training_curves(rows, tmp_path / "one.png", keys=["loss"])
    two = plot_training_curves(rows, tmp_path / "two.png")  # loss and lr: the others have no values
    w1, h1 = Image.open(one).size
    w2, h2 = Image.open(two).size
    assert h1 == h2 and w2 - w1 >= 300  # a second panel beside the first
    _check_png(one)
    pixels = np.asarray(Image.open(one).convert("RGB")).astype(int)
    assert (np.abs(pixels[..., 0] - pixels[..., 2]) > 100).sum() > 50  # the coloured curve is drawn
    with pytest.raises(ValueError, match="no row holds"):
        plot_training_curves(rows, tmp_path / "none.png", keys=["rank1"])
