"""End to end through the CLI on tiny datasets written to disk in their real layouts.

SYSU-MM01 (JPEG), RegDB (BMP, idx lists) and an NPU-ReID-style manifest (PNG, indoor and
outdoor cameras) -- see ``tests/layouts.py``. On each: ``train`` to its final evaluation with
``--eval-every``, ``--resume`` after a run stopped by ``--max-steps`` (same weights as a run
never stopped), and ``eval`` with the dataset's own protocols and directions; plus
``torchrun --nproc_per_node 2`` (gloo) stopped and resumed on RegDB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mag_mmt.checkpoint import load_checkpoint
from mag_mmt.cli import main
from tests.layouts import TINY_TRAIN

#: the settings each dataset's own protocol reports, main setting first
MAIN_SETTINGS = {
    "sysu": ["SYSU-MM01 all-search single-shot"],
    "regdb": ["RegDB visible-to-thermal", "RegDB thermal-to-visible"],
    "manifest": [
        "NPU-ReID visible-to-thermal/all-search/single-shot",
        "NPU-ReID thermal-to-visible/all-search/single-shot",
    ],
}
FULL_SETTINGS = {
    "sysu": [f"SYSU-MM01 {m}-search {s}-shot" for m in ("all", "indoor") for s in ("single", "multi")],
    "regdb": MAIN_SETTINGS["regdb"],
    "manifest": [
        f"NPU-ReID {d}/{m}-search/{s}-shot"
        for d in ("visible-to-thermal", "thermal-to-visible")
        for m in ("all", "indoor", "outdoor")
        for s in ("single", "multi")
    ],
}
DATASETS = ("sysu", "regdb", "manifest")


@pytest.fixture
def roots(request):
    """``--root`` of each dataset kind (the session fixtures of ``conftest.py``)."""
    return {
        "sysu": request.getfixturevalue("sysu_root"),
        "regdb": request.getfixturevalue("regdb_root"),
        "manifest": request.getfixturevalue("manifest_csv"),
    }


def train_argv(data: str, root: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", data, "--root", str(root), *TINY_TRAIN, "--steps-per-epoch", "2",
            "--out", str(out), *extra]


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(out / "last.pt", kind="train")["model"]


@pytest.mark.slow
@pytest.mark.parametrize("data", DATASETS)
def test_train_eval_every_resume_and_eval(data, roots, tmp_path, capsys):
    """train (with --eval-every) to the final evaluation of the dataset's own protocol; a run
    stopped by --max-steps and resumed ends with the same weights; eval (main settings,
    --full, and with --data/--root given) reports the dataset's own settings."""
    root = roots[data]
    whole = tmp_path / "whole"
    assert main(train_argv(data, root, whole, "--epochs", "2", "--eval-every", "1")) == 0
    printed = capsys.readouterr().out
    assert f"({MAIN_SETTINGS[data][0]})" in printed.splitlines()[-1]
    report = json.loads((whole / "history.json").read_text())
    assert report["final"]["setting"] == MAIN_SETTINGS[data][0]
    assert [row["epoch"] for row in report["history"]] == [1, 2]
    for row in report["history"]:  # --eval-every 1: every epoch evaluated with the dataset's protocol
        assert row["setting"] == MAIN_SETTINGS[data][0] and 0.0 <= row["rank1"] <= 1.0

    stopped = tmp_path / "stopped"
    assert main(train_argv(data, root, stopped, "--epochs", "2", "--eval-every", "1", "--max-steps", "3")) == 0
    assert load_checkpoint(stopped / "last.pt", kind="train")["step"] == 3
    assert "final" not in json.loads((stopped / "history.json").read_text())  # stopped early: no final evaluation
    assert main(train_argv(data, root, stopped, "--epochs", "2", "--eval-every", "1", "--resume")) == 0
    resumed = json.loads((stopped / "history.json").read_text())
    assert resumed["final"]["setting"] == MAIN_SETTINGS[data][0]
    a, b = weights(whole), weights(stopped)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    capsys.readouterr()

    for extra, expected in (([], MAIN_SETTINGS[data]), (["--full"], FULL_SETTINGS[data])):
        out_json = tmp_path / f"eval{len(extra)}.json"
        assert main(["eval", "--checkpoint", str(whole / "last.pt"), "--trials", "2", "--device", "cpu",
                     "--json", str(out_json), *extra]) == 0
        results = json.loads(out_json.read_text())
        assert list(results) == expected
        for summary in results.values():
            assert 0.0 <= summary["mAP"][0] <= 1.0 and 0.0 < summary["rank-1"][0] + summary["mINP"][0]
        table = capsys.readouterr().out
        assert all(name in table for name in expected)
    # the dataset named on the command line (not the checkpoint's) gives the same settings
    out_json = tmp_path / "explicit.json"
    assert main(["eval", "--checkpoint", str(whole / "last.pt"), "--data", data, "--root", str(root),
                 "--trials", "1", "--json", str(out_json)]) == 0
    assert list(json.loads(out_json.read_text())) == MAIN_SETTINGS[data]


@pytest.mark.slow
def test_manifest_searches_follow_its_scene_column(manifest_csv, tmp_path):
    """indoor-/outdoor-search galleries are the cameras the CSV's scene column names."""
    from mag_mmt.data import read_manifest
    from mag_mmt.training import run_protocol
    from mag_mmt.models import build_model

    data = read_manifest(manifest_csv)
    assert data.protocol == "npu"
    assert data.meta["camera_scene"] == {1: "indoor", 2: "indoor", 3: "outdoor", 4: "outdoor",
                                        5: "indoor", 6: "indoor", 7: "outdoor", 8: "outdoor"}
    model = build_model("small-cnn", data.num_train_identities)
    results = run_protocol(model, data, (16, 8), trials=2, full=True)
    assert list(results) == FULL_SETTINGS["manifest"]
    for name, result in results.items():
        trial = result.trials[0]
        # 3 test identities; single-shot: 1 image per (identity, camera); multi: both images
        per_camera = 1 if "single-shot" in name else 2
        cameras = 4 if "all-search" in name else 2
        assert trial.num_valid_queries == 3 * 4 * 2  # every query of the direction has a match
        assert len(trial.cmc) == min(20, 3 * cameras * per_camera)


@pytest.mark.slow
def test_console_script_trains_regdb_to_its_final_evaluation(regdb_root, tmp_path):
    """The real entry point (a subprocess, as a user runs it) on RegDB."""
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "mag_mmt.cli", *train_argv("regdb", regdb_root, out, "--epochs", "1")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "final: rank-1" in proc.stdout and "(RegDB visible-to-thermal)" in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_torchrun_two_processes_stopped_and_resumed_on_regdb(regdb_root, tmp_path):
    """``torchrun --nproc_per_node 2`` (gloo, CPU) on RegDB on disk: a run stopped after one
    step is resumed to the end and reports the final RegDB evaluation once."""
    out = tmp_path / "ddp"
    base = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "mag_mmt.cli", "train", "--data", "regdb", "--root", str(regdb_root), *TINY_TRAIN,
            "--steps-per-epoch", "2", "--epochs", "2", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run([*base, "--max-steps", "1"], capture_output=True, text=True, timeout=300, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "final:" not in first.stdout
    assert load_checkpoint(out / "last.pt", kind="train")["step"] == 1
    second = subprocess.run([*base, "--resume"], capture_output=True, text=True, timeout=300, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("final:") == 1 and "(RegDB visible-to-thermal)" in second.stdout
    state = load_checkpoint(out / "last.pt", kind="train")
    assert state["step"] == 4 and state["epoch"] == 2
