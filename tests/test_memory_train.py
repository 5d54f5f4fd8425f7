"""The cross-modality memory in the trainer: ``--memory-size`` builds it around the triplet loss,
its queue travels in the checkpoint so a killed run resumes to the same weights, bad sizes are
named, and the ablation offers it as the ``+MMT+mem`` arm."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mag_mmt import ablation
from mag_mmt.checkpoint import load_checkpoint, save_checkpoint
from mag_mmt.cli import build_parser, main, train_config
from mag_mmt.training import TrainConfig, build_triplet, config_differences, train
from mag_mmt.errors import UserError
from mag_mmt.losses import BatchHardTripletLoss, MultiMaskingTripletLoss
from mag_mmt.memory import CrossModalityMemory

from tests.train_helpers import small_cfg, small_data


@pytest.fixture(scope="module")
def data():
    return small_data()


def _cfg(out: Path, **kw) -> TrainConfig:
    # batch 2 x P x K = 8; a memory of 24 rows fills after three steps and then wraps
    return small_cfg(out, **{"steps_per_epoch": 3, "memory_size": 24, **kw})


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    assert a.keys() == b.keys()
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("loss, inner", [("mmt", MultiMaskingTripletLoss), ("batch-hard", BatchHardTripletLoss)])
def test_build_triplet_wraps_the_loss_in_a_memory(loss, inner):
    cfg = TrainConfig(loss=loss, margin=0.4, memory_size=48)
    crit = build_triplet(cfg, embedding_size=32)
    assert isinstance(crit, CrossModalityMemory)
    assert type(crit.loss) is inner and crit.loss.margin == 0.4
    assert (crit.embedding_size, crit.memory_size) == (32, 48)
    assert crit.loss.cross_rank  # the memory puts the batch in front of the queue
    assert type(build_triplet(TrainConfig(loss=loss))) is inner  # memory_size 0: no memory
    with pytest.raises(ValueError, match="embedding_size is required"):
        build_triplet(cfg)


def test_cli_memory_size_reaches_the_config():
    assert train_config(build_parser().parse_args(["train"])).memory_size == 0
    assert train_config(build_parser().parse_args(["train", "--memory-size", "256"])).memory_size == 256
    assert train_config(build_parser().parse_args(["ablation", "--memory-size", "64"])).memory_size == 64


def test_trainer_fills_the_memory_and_saves_it(tmp_path, data):
    result = train(_cfg(tmp_path, epochs=1, steps_per_epoch=2), data=data, log=None)
    state = load_checkpoint(tmp_path / "last.pt", kind="train")
    memory = state["memory"]
    feature_dim = result.model.feature_dim
    assert memory["embedding_memory"].shape == (24, feature_dim)
    assert (int(memory["num_filled"]), int(memory["queue_idx"])) == (16, 16)  # two batches of 8 written
    assert memory["embedding_memory"][:16].abs().sum(dim=1).gt(0).all()  # written rows hold features
    assert memory["embedding_memory"][16:].eq(0).all()
    labels = memory["label_memory"][:16]
    assert labels.max() < result.data.num_train_identities
    assert (labels.bincount() % 4 == 0).all()  # each identity of a batch: K=2 visible + 2 thermal rows
    assert set(memory["modality_memory"][:16].tolist()) == {0, 1}
    # without a memory the checkpoint has no queue
    train(_cfg(tmp_path / "plain", epochs=1, steps_per_epoch=1, memory_size=0), data=data, log=None)
    assert "memory" not in load_checkpoint(tmp_path / "plain" / "last.pt", kind="train")


@pytest.mark.slow
@pytest.mark.parametrize("stop_after", [2, 4])
def test_killed_run_with_memory_resumes_to_the_same_weights(tmp_path, data, stop_after):
    straight = train(_cfg(tmp_path / "straight"), data=data, log=None)
    assert len(straight.history) == 2
    first = train(_cfg(tmp_path / "resumed", max_steps=stop_after), data=data, log=None)
    assert first.stopped_early
    saved = load_checkpoint(tmp_path / "resumed" / "last.pt", kind="train")
    assert saved["step"] == stop_after and int(saved["memory"]["num_filled"]) == min(8 * stop_after, 24)
    resumed = train(_cfg(tmp_path / "resumed", resume=True), data=data, log=None)
    assert _same(_weights(straight.model), _weights(resumed.model))

    # the restored queue matters: the same resume from an emptied queue ends elsewhere
    train(_cfg(tmp_path / "emptied", max_steps=stop_after), data=data, log=None)
    state = load_checkpoint(tmp_path / "emptied" / "last.pt", kind="train")
    state["memory"] = {k: torch.zeros_like(v) for k, v in state["memory"].items()}
    save_checkpoint(state, tmp_path / "emptied" / "last.pt")
    other = train(_cfg(tmp_path / "emptied", resume=True), data=data, log=None)
    assert not _same(_weights(straight.model), _weights(other.model))

    # and the memory changes training: the same run without it ends elsewhere
    plain = train(_cfg(tmp_path / "plain", memory_size=0), data=data, log=None)
    assert not _same(_weights(straight.model), _weights(plain.model))


def test_resume_with_another_memory_size_is_refused(tmp_path, data):
    train(_cfg(tmp_path, max_steps=1), data=data, log=None)
    for size in (0, 32):
        with pytest.raises(UserError, match=rf"memory_size: 24 -> {size}"):
            train(_cfg(tmp_path, resume=True, memory_size=size), data=data, log=None)
    assert config_differences(_cfg(tmp_path), _cfg(tmp_path, memory_size=16)) == ["memory_size: 24 -> 16"]
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 1  # untouched


@pytest.mark.parametrize("change, message", [
    ({"memory_size": 7}, r"--memory-size 7\) must be at least the global batch, 2 x P x K = 8"),
    ({"memory_size": -1}, r"memory_size \(--memory-size\) must be an int >= 0"),
    ({"memory_size": 2.5}, r"memory_size \(--memory-size\) must be an int >= 0"),
    ({"memory_size": True}, r"memory_size \(--memory-size\) must be an int >= 0"),
    ({"loss": "wrt"}, r"--memory-size 24\) needs --loss mmt or batch-hard .* not --loss wrt"),
    ({"loss": "none"}, r"--memory-size 24\) needs --loss mmt or batch-hard .* not --loss none"),
])
def test_bad_memory_size_is_a_user_error(tmp_path, change, message):
    with pytest.raises(UserError, match=message):
        _cfg(tmp_path, **change).validate()


def test_memory_must_hold_the_batch_of_every_process(tmp_path):
    cfg = _cfg(tmp_path, memory_size=8)
    cfg.check_memory_size(world_size=1)
    with pytest.raises(UserError, match=r"global batch, 2 x P x K x 2 processes = 16"):
        cfg.check_memory_size(world_size=2)
    two_views = _cfg(tmp_path, memory_size=8, augment="reid", visible_views=2)  # 2 visible views + thermal
    with pytest.raises(UserError, match=r"global batch, 3 x P x K = 12"):
        two_views.validate()
    assert ablation.resolve_arms(two_views, ablation.select_arms("+MMT+mem"))["+MMT+mem"]["memory_size"] == 48


@pytest.mark.parametrize("argv, message", [
    (["--memory-size", "4"], "must be at least the global batch"),
    (["--memory-size", "64", "--loss", "wrt"], "needs --loss mmt or batch-hard"),
])
def test_cli_bad_memory_size_fails_before_any_work(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["train", *argv, "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_memory_arm_is_offered_but_not_a_default():
    assert "+MMT+mem" not in ablation.select_arms(None)
    arms = ablation.select_arms("+MMT,+MMT+mem")
    assert list(arms) == ["+MMT", "+MMT+mem"]
    base = TrainConfig(data="synthetic", num_identities=3, num_instances=2)
    resolved = ablation.resolve_arms(base, arms)
    assert resolved["+MMT+mem"] == {"loss": "mmt", "mag": False, "memory_size": ablation.MEMORY_BATCHES * 12}
    assert ablation.resolve_arms(base, arms, world_size=2)["+MMT+mem"]["memory_size"] == ablation.MEMORY_BATCHES * 24
    assert resolved["+MMT"] == arms["+MMT"]
    runs = ablation.plan_runs(base, resolved, [0], "out")
    mem = next(r for r in runs if r.arm == "+MMT+mem")
    mem.config.validate()
    other = next(r for r in runs if r.arm == "+MMT").config
    assert config_differences(other, mem.config) == [f"memory_size: 0 -> {4 * 12}"]
    assert ("+MMT+mem", "+MMT") in ablation.comparisons_for(list(arms))


@pytest.mark.slow
def test_memory_arm_runs_in_an_ablation(tmp_path, data):
    base = TrainConfig(data="synthetic", synthetic_kwargs={"num_identities": 12}, epochs=1, steps_per_epoch=2,
                       num_identities=2, num_instances=2, eval_trials=1, device="cpu", progress=False)
    payload = ablation.run_ablation(base, ablation.select_arms("+MMT,+MMT+mem"), seeds=[0], out=tmp_path,
                                    progress=False, log=None)
    assert payload["complete"]
    assert payload["arms"]["+MMT+mem"]["fields"]["memory_size"] == 32  # resolved, stored as a number
    assert payload["arms"]["+MMT+mem"]["config"]["memory_size"] == 32
    state = load_checkpoint(tmp_path / "runs" / "mmt_mem" / "seed0" / "last.pt", kind="train")
    assert int(state["memory"]["num_filled"]) == 16
    assert [c["arm"] for c in payload["comparisons"]] == ["+MMT+mem"]
