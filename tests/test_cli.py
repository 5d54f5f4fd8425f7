"""The training engine and the ``mag-mmt`` command line: resume, checkpoints, smoke runs, bad args."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch

from mag_mmt.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mag_mmt.cli import main
from mag_mmt.training import load_init, train
from mag_mmt.models import build_model
from tests.train_helpers import small_cfg as _cfg, small_data, assert_same_weights as _same_weights


@pytest.fixture(scope="module")
def data():
    return small_data()


@pytest.mark.slow
@pytest.mark.parametrize("stop_after", [1, 2, 3])
def test_killed_run_resumes_to_the_same_weights(tmp_path, data, stop_after):
    straight = train(_cfg(tmp_path / "straight"), data=data, log=None)
    assert len(straight.history) == 2
    first = train(_cfg(tmp_path / "resumed", max_steps=stop_after), data=data, log=None)
    assert first.stopped_early
    state = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert state["step"] == stop_after
    resumed = train(_cfg(tmp_path / "resumed", resume=True), data=data, log=None)
    _same_weights(straight.model, resumed.model)
    # and something actually trained: the weights moved away from the initialisation
    fresh = train(_cfg(tmp_path / "one", max_steps=1), data=data, log=None)
    assert any(not torch.equal(p, q) for p, q in zip(fresh.model.parameters(), straight.model.parameters()))


def test_resume_refuses_another_configuration(tmp_path, data):
    train(_cfg(tmp_path, max_steps=1), data=data, log=None)
    with pytest.raises(ValueError, match="loss"):
        train(_cfg(tmp_path, loss="batch-hard", resume=True), data=data, log=None)


def test_truncated_checkpoint_is_detected(tmp_path):
    path = save_checkpoint({"kind": "train", "model": {"w": torch.randn(64, 64)}}, tmp_path / "c.pt")
    assert load_checkpoint(path)["kind"] == "train"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"something": 1}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a mag-mmt checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = save_checkpoint({"kind": "train", "model": {"w": torch.zeros(2)}}, tmp_path / "c.pt")

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"kind": "train", "model": {"w": torch.ones(2)}}, path)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.zeros(2))  # old file intact
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary left behind


def test_init_loads_backbone_but_not_classifier(tmp_path, data):
    run = train(_cfg(tmp_path / "a", max_steps=1), data=data, log=None)
    other = build_model("small-cnn", num_classes=99)
    info = load_init(other, str(tmp_path / "a" / "last.pt"))
    assert not any(k.startswith("head.classifier") for k in info["loaded"])
    assert torch.equal(other.visible[0][0].weight, run.model.visible[0][0].weight)


@pytest.mark.slow
def test_cli_train_then_eval(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--data", "synthetic", "--epochs", "1", "--steps-per-epoch", "2", "-P", "2", "-K", "2",
            "--out", str(out), "--no-progress", "--device", "cpu"]
    assert main(args) == 0
    assert (out / "last.pt").is_file()
    history = json.loads((out / "history.json").read_text())
    assert 0.0 <= history["final"]["rank1"] <= 1.0
    capsys.readouterr()
    assert main(["eval", "--data", "synthetic", "--checkpoint", str(out / "last.pt"), "--trials", "2",
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "SYSU-MM01 all-search single-shot" in printed and "mAP" in printed
    # without --data/--seed the checkpoint's own dataset is used: the same numbers as the explicit call
    assert main(["eval", "--checkpoint", str(out / "last.pt"), "--trials", "2", "--device", "cpu"]) == 0
    assert capsys.readouterr().out == printed


@pytest.mark.slow
def test_cli_pretrain_then_finetune_from_it(tmp_path, capsys):
    pre = tmp_path / "mmgl"
    assert main(["pretrain", "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "4", "--out", str(pre),
                 "--no-progress", "--device", "cpu"]) == 0
    ckpt = pre / "pretrain.pt"
    assert load_checkpoint(ckpt, kind="pretrain")["meta"]["grid"]
    out = tmp_path / "ft"
    capsys.readouterr()
    assert main(["train", "--init", str(ckpt), "--epochs", "1", "--steps-per-epoch", "1", "-P", "2", "-K", "2",
                 "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    assert "init:" in capsys.readouterr().out
    pre_state = load_checkpoint(ckpt)["model"]
    m = build_model("small-cnn", num_classes=3)
    info = load_init(m, str(ckpt))
    assert info["loaded"] and all(torch.equal(m.state_dict()[k], pre_state[k]) for k in info["loaded"])


@pytest.mark.slow
def test_cli_demo_tiny(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--preset", "tiny", "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["arms"]) == ["B", "+MAG", "+MMTN", "+MMTP", "+MMT", "+MAG+MMT"]  # the paper's Table 2
    for arm in results["arms"].values():
        for key in ("rank1", "mAP", "mINP"):
            assert 0.0 <= arm[key] <= 1.0
        assert arm["cpu_seconds"] > 0 and len(arm["load"]) == 2
    assert results["test_identities"] == 6
    for png in ("augmented_pairs.png", "cmc.png", "table.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--data", "nope"], "invalid choice"),
        (["train", "--data", "sysu"], "--root is required"),
        (["train", "--data", "sysu", "--root", "/no/such/folder"], "is not a folder"),
        (["train", "--data", "manifest", "--root", "/no/such.csv"], "does not exist"),
        (["train", "--init", "/no/such.pt"], "does not exist"),
        (["train", "--pretrained", "/no/such.pth", "--model", "dual-swin"], "does not exist"),
        (["train", "--epochs", "0"], "epochs must be >= 1"),
        (["train", "--mag-p", "1.5"], "mag_p"),
        (["eval", "--checkpoint", "/no/such.pt"], "does not exist"),
        (["eval", "--data", "regdb", "--checkpoint", "x.pt"], "--root is required"),
        (["pretrain", "--data", "sysu", "--root", "/no/such/folder"], "is not a folder"),
        (["demo", "--preset", "huge"], "invalid choice"),
        (["pretrain", "--grid", "1,1"], "at least 2 tiles"),
        (["pretrain", "--grid", "2,2", "--num-permutations", "100"], "num-permutations"),
    ],
)
def test_bad_arguments_fail_fast_with_a_clear_message(argv, message, capsys, tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(SystemExit) as exc:
        main([*argv, *([] if argv[0] != "train" else ["--out", str(tmp_path / "o")])])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert time.perf_counter() - t0 < 5
    assert not (tmp_path / "o").exists()  # no work started


def test_eval_rejects_a_truncated_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(SystemExit):
        main(["eval", "--checkpoint", str(bad)])
    assert "truncated or corrupt" in capsys.readouterr().err


def test_console_script_help_runs():
    out = subprocess.run([sys.executable, "-m", "mag_mmt.cli", "--help"], capture_output=True, text=True, check=True)
    for command in ("demo", "train", "eval", "pretrain"):
        assert command in out.stdout


@pytest.mark.slow
def test_torchrun_ddp_two_processes_on_cpu(tmp_path):
    """``torchrun`` + DDP (gloo): the sampler shards identities, MMT compares against the global
    batch, rank 0 writes the checkpoint and reports once."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mag_mmt.cli", "train", "--epochs", "1", "--steps-per-epoch", "2", "-P", "2", "-K", "2",
           "--out", str(out), "--no-progress", "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("epoch 1 |") == 1 and proc.stdout.count("final:") == 1
    state = load_checkpoint(out / "last.pt", kind="train")
    assert state["step"] == 2 and state["epoch"] == 1
