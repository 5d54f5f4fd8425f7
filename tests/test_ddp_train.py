"""Training with two processes (``torchrun``, gloo, CPU): each rank draws its own MAG boxes,
the checkpoint holds every rank's random states, and a stopped run resumed with two processes
ends with the weights of an uninterrupted two-process run, every rank continuing its own draws.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from mag_mmt.checkpoint import load_checkpoint
from mag_mmt.data.synthetic import make_synthetic
from mag_mmt.training import TrainConfig, augment_seed, train
from mag_mmt.errors import UserError

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed with gloo"),
]

WORLD = 2
RECORDER = Path(__file__).with_name("ddp_record.py")
# 2 epochs x 3 steps; stopped after 4 steps, i.e. in the middle of the second epoch
TRAIN = ["train", "--epochs", "2", "--steps-per-epoch", "3", "-P", "2", "-K", "2", "--mag-p", "0.7",
         "--seed", "3", "--no-progress", "--device", "cpu"]


def _torchrun(record: Path, *args: str) -> subprocess.CompletedProcess:
    record.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(WORLD),
           str(RECORDER), str(record), *TRAIN, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def _draws(record: Path) -> list[list[dict[str, torch.Tensor]]]:
    return [torch.load(record / f"draws-rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    _torchrun(root / "rec-straight", "--out", str(root / "straight"))
    stopped = _torchrun(root / "rec-first", "--out", str(root / "resumed"), "--max-steps", "4")
    first_state = load_checkpoint(root / "resumed" / "last.pt", kind="train")
    resumed = _torchrun(root / "rec-second", "--out", str(root / "resumed"), "--resume")
    return root, stopped, first_state, resumed


def test_each_rank_draws_its_own_boxes(runs):
    root = runs[0]
    draws = _draws(root / "rec-straight")
    assert [len(d) for d in draws] == [6, 6]  # one draw per step on each rank
    for step in range(6):
        assert not torch.equal(draws[0][step]["boxes"], draws[1][step]["boxes"]), step
    # and reproducibly: the stopped run drew the same boxes for its 4 steps
    first = _draws(root / "rec-first")
    for r in range(WORLD):
        assert len(first[r]) == 4
        assert all(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(first[r], draws[r]))
    assert augment_seed(3, 0) == 4 and augment_seed(3, 1) not in (augment_seed(3, 0), augment_seed(4, 1))


def test_checkpoint_holds_every_ranks_random_states(runs):
    _root, stopped, state, _ = runs
    assert state["step"] == 4 and state["epoch"] == 1 and state["step_in_epoch"] == 1
    rng = state["rng"]
    assert rng["world_size"] == WORLD and len(rng["ranks"]) == WORLD
    for key in ("augment", "torch"):
        assert not torch.equal(rng["ranks"][0][key], rng["ranks"][1][key]), key
    assert rng["ranks"][0]["python"] != rng["ranks"][1]["python"]
    # the stop reports once (rank 0) where the checkpoint is and how to resume
    assert stopped.stdout.count("resume with: torchrun --nproc_per_node 2 -m mag_mmt.cli train") == 1
    assert stopped.stdout.count("checkpoint: ") == 1


def test_resumed_two_process_run_ends_with_the_uninterrupted_weights(runs):
    root, _, _, resumed = runs
    assert resumed.stdout.count("resumed from") == 1 and resumed.stdout.count("final:") == 1
    straight = load_checkpoint(root / "straight" / "last.pt", kind="train")
    again = load_checkpoint(root / "resumed" / "last.pt", kind="train")
    assert straight["step"] == again["step"] == 6
    assert straight["model"].keys() == again["model"].keys()
    for key in straight["model"]:
        assert torch.equal(straight["model"][key], again["model"][key]), key
    # every rank went on with its own draws: first 4 + resumed 2 == the uninterrupted 6, per rank
    draws, first, second = _draws(root / "rec-straight"), _draws(root / "rec-first"), _draws(root / "rec-second")
    for r in range(WORLD):
        assert len(second[r]) == 2
        for a, b in zip(first[r] + second[r], draws[r]):
            assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["batch_prob"], b["batch_prob"])


def test_resuming_with_another_number_of_processes_is_refused(runs):
    root = runs[0]
    cfg = TrainConfig(epochs=2, steps_per_epoch=3, num_identities=2, num_instances=2, mag_p=0.7, seed=3,
                      progress=False, device="cpu", out=str(root / "straight"), resume=True)
    with pytest.raises(UserError, match=r"world_size: 2 -> 1.*written by 2 process\(es\).*--nproc_per_node 2"):
        train(cfg, data=make_synthetic("demo", seed=3), log=None)
