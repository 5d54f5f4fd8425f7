"""``mag-mmt ablation`` / :func:`mag_mmt.ablation.run_ablation` on tiny data."""

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mag_mmt import ablation, stats, training
from mag_mmt.data import sampler as sampler_module
from mag_mmt.errors import UserError


def tiny_base(**overrides) -> training.TrainConfig:
    values = dict(data="synthetic", synthetic_kwargs={"num_identities": 12, "images_per_camera": 2},
                  epochs=1, steps_per_epoch=2, num_identities=2, num_instances=2, eval_trials=1,
                  device="cpu", progress=False, model_kwargs={"widths": (8, 8, 16, 16, 32)})
    values.update(overrides)
    return training.TrainConfig(**values)


TWO_ARMS = ablation.select_arms("B,+MMT")


# --------------------------------------------------------------------------- fast: arms and plans


def test_parse_int_list():
    assert ablation.parse_int_list("1-10") == list(range(1, 11))
    assert ablation.parse_int_list("1,3,5") == [1, 3, 5]
    assert ablation.parse_int_list(" 0-2, 7") == [0, 1, 2, 7]
    for bad in ("", "a", "3-1", "1,1", "1-2,2", "-1"):
        with pytest.raises(UserError, match="--seeds"):
            ablation.parse_int_list(bad, "--seeds")


def test_select_arms_and_unknown_names():
    assert list(ablation.select_arms(None)) == ["B", "+MAG", "+MMTN", "+MMTP", "+MMT", "+MAG+MMT", "CE+BH", "CE+WRT"]
    assert list(ablation.select_arms(["+MAG+MMT", "B"])) == ["+MAG+MMT", "B"]
    with pytest.raises(UserError, match=r"'\+MMX'.*choose from B, \+MAG, \+MMTN"):
        ablation.select_arms("B,+MMX")
    with pytest.raises(UserError, match="twice"):
        ablation.select_arms("B,B")


def test_default_arms_set_the_paper_configurations():
    arms = ablation.DEFAULT_ARMS
    assert arms["B"]["loss"] == "none" and arms["+MAG"]["loss"] == "none"
    assert arms["+MMTN"] == {"loss": "mmt", "mag": False, "pos_weight": 0.0}
    assert arms["+MMTP"] == {"loss": "mmt", "mag": False, "mman_weight": 0.0}
    assert arms["CE+BH"]["loss"] == "batch-hard" and arms["CE+WRT"]["loss"] == "wrt"
    for name, fields in arms.items():  # MAG only in the arms named +MAG
        assert fields["mag"] is ("+MAG" in name), name


def test_resolved_configs_differ_only_in_the_arm_fields():
    base = tiny_base()
    runs = ablation.plan_runs(base, ablation.select_arms(None), [0, 3], "out")
    assert len(runs) == 16 and [r.seed for r in runs[:8]] == [0] * 8
    base_values = base.to_dict()
    for run in runs:
        values = run.config.to_dict()
        changed = {k for k in values if values[k] != base_values[k]}
        expected = {k for k, v in ablation.DEFAULT_ARMS[run.arm].items() if base_values[k] != v}
        assert changed - {"seed", "out", "resume"} == expected, run.arm
        assert run.config.seed == run.seed and run.config.resume
        assert Path(run.config.out) == Path("out") / "runs" / ablation._slug(run.arm) / f"seed{run.seed}"
    assert len({r.config.out for r in runs}) == len(runs)


def test_bench_base_sets_the_frozen_benchmark_and_refuses_clashing_flags():
    base = training.TrainConfig(seed=4, out="x", device="cpu")
    bench = ablation.bench_base(base)
    for k, v in ablation.BENCH_BASE.items():
        assert getattr(bench, k) == v
    assert (bench.seed, bench.out, bench.device) == (4, "x", "cpu")  # run control is the caller's
    assert ablation.bench_base(dataclasses.replace(base, lr=ablation.BENCH_BASE["lr"])).lr == ablation.BENCH_BASE["lr"]
    with pytest.raises(UserError, match="--bench fixes epochs, lr "):
        ablation.bench_base(dataclasses.replace(base, lr=0.2, epochs=3))


def test_bad_arms_and_options_are_user_errors(tmp_path):
    base = tiny_base()
    with pytest.raises(UserError, match=r"may not change \['epochs', 'seed'\]"):
        ablation.run_ablation(base, {"X": {"seed": 3, "epochs": 2}}, [0], tmp_path)
    with pytest.raises(UserError, match="not TrainConfig fields"):
        ablation.run_ablation(base, {"X": {"lossy": 1}}, [0], tmp_path)
    with pytest.raises(UserError, match="share the folder"):
        ablation.run_ablation(base, {"+A": {}, "A": {}}, [0], tmp_path)
    with pytest.raises(UserError, match="arm 'X'.*unknown loss"):
        ablation.run_ablation(base, {"X": {"loss": "nope"}}, [0], tmp_path)
    with pytest.raises(UserError, match="regdb"):
        ablation.run_ablation(base, TWO_ARMS, [0], tmp_path, regdb_trials=[1, 2])
    with pytest.raises(UserError, match="seeds"):
        ablation.run_ablation(base, TWO_ARMS, [0, 0], tmp_path)
    with pytest.raises(UserError, match="lr"):
        ablation.run_ablation(dataclasses.replace(base, lr=-1.0), TWO_ARMS, [0], tmp_path)
    assert not any(tmp_path.iterdir())  # nothing ran


def test_comparisons_answer_the_questions():
    pairs = ablation.comparisons_for(list(ablation.DEFAULT_ARMS))
    assert [(a, "B") for a in ablation.DEFAULT_ARMS if a != "B"] == pairs[:7]
    assert pairs[7:] == [("+MAG+MMT", "+MMT"), ("+MAG+MMT", "+MAG"), ("+MMT", "CE+BH")]
    assert ablation.comparisons_for(["+MMT", "CE+BH"]) == [("+MMT", "CE+BH")]


# --------------------------------------------------------------------------- training


@pytest.fixture
def recorded_batches(monkeypatch):
    """The first batch every trained run drew, by its output folder."""
    batches: dict[str, list[int]] = {}
    original = sampler_module.CrossModalityIdentitySampler
    trained: list[str] = []
    real_train = training.train

    class Recording(original):
        def __iter__(self):
            for i, batch in enumerate(super().__iter__()):
                if i == 0:
                    batches.setdefault(self._out, list(batch))
                yield batch

    def train(cfg, data=None, log=print):
        Recording._out = cfg.out
        trained.append(cfg.out)
        return real_train(cfg, data=data, log=log)

    monkeypatch.setattr(sampler_module, "CrossModalityIdentitySampler", Recording)
    monkeypatch.setattr(training, "train", train)
    return batches, trained


def _metrics_by_run(out: Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(out)): json.loads(p.read_text())["metrics"]
            for p in sorted(out.glob("runs/**/result.json"))}


@pytest.mark.slow
def test_ablation_files_schema_batches_and_resume(tmp_path, recorded_batches):
    batches, trained = recorded_batches
    arms = ablation.select_arms("B,+MAG,+MMT,+MAG+MMT")
    base = tiny_base()
    out = tmp_path / "abl"
    lines: list[str] = []
    payload = ablation.run_ablation(base, arms, [0, 1], out, log=lines.append, progress=False)

    # files and schema
    for name in ("results.json", "results.md", "cmc.png", "training_curves.png", "table.png", "comparisons.png"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "results.json").read_text())
    assert saved == json.loads(json.dumps(payload))
    assert saved["complete"] and saved["seeds"] == [0, 1] and saved["protocol"] == "sysu"
    assert list(saved["arms"]) == list(arms)
    for arm, info in saved["arms"].items():
        assert info["fields"] == arms[arm]
        assert set(info["seeds"]) == {"0", "1"}
        for row in info["seeds"].values():
            for m in ablation.METRICS:
                assert 0.0 <= row[m] <= 1.0
            assert row["rank1"] <= row["rank5"] <= row["rank10"] <= row["rank20"]
            assert row["rank1"] == row["cmc"][0]
            assert len(row["history"]) == 1 and {"loss", "id_loss", "triplet_loss", "epoch"} <= set(row["history"][0])
            assert row["seconds"] > 0
        for m in ablation.METRICS:
            values = [info["seeds"][s][m] for s in ("0", "1")]
            mean, low, high = stats.t_interval(values)
            assert info["summary"][m] == {"mean": pytest.approx(mean), "low": pytest.approx(low),
                                          "high": pytest.approx(high), "n": 2, "values": values}
    assert saved["arms"]["B"]["seeds"]["0"]["history"][0]["triplet_loss"] == 0.0  # CE only
    comparisons = {(c["arm"], c["reference"]): c for c in saved["comparisons"]}
    assert set(comparisons) == {("+MAG", "B"), ("+MMT", "B"), ("+MAG+MMT", "B"), ("+MAG+MMT", "+MMT"),
                                ("+MAG+MMT", "+MAG")}
    c = comparisons[("+MAG+MMT", "+MMT")]
    diffs = [saved["arms"]["+MAG+MMT"]["seeds"][s]["rank1"] - saved["arms"]["+MMT"]["seeds"][s]["rank1"]
             for s in ("0", "1")]
    assert c["rank1"]["diffs"] == pytest.approx(diffs) and c["seeds"] == [0, 1]
    a_values = [saved["arms"]["+MAG+MMT"]["seeds"][s]["rank1"] for s in ("0", "1")]
    b_values = [saved["arms"]["+MMT"]["seeds"][s]["rank1"] for s in ("0", "1")]
    assert c["rank1"] == json.loads(json.dumps(stats.paired_t_test(a_values, b_values)))
    md = (out / "results.md").read_text()
    assert "| +MAG+MMT - +MMT | Rank-1 |" in md and "weak test" in md and "95% interval" in md
    assert sum("training" in line for line in lines) == 8 and sum("rank-1" in line for line in lines) == 8

    # identical data and batches across arms, different across seeds
    for seed in (0, 1):
        firsts = [batches[str(out / "runs" / ablation._slug(a) / f"seed{seed}")] for a in arms]
        assert all(f == firsts[0] for f in firsts)
    assert batches[str(out / "runs" / "b" / "seed0")] != batches[str(out / "runs" / "b" / "seed1")]

    # a second call redoes nothing; a deleted result is redone alone, with the same numbers
    before = _metrics_by_run(out)
    trained.clear()
    again = ablation.run_ablation(base, arms, [0, 1], out, log=lines.append)
    assert trained == [] and again["arms"] == payload["arms"]
    redo = out / "runs" / "mag_mmt" / "seed1"
    (redo / "result.json").unlink()
    (redo / "last.pt").unlink()
    ablation.run_ablation(base, arms, [0, 1], out, log=None)
    assert trained == [str(redo)]
    assert _metrics_by_run(out) == before

    # a run interrupted by max_steps resumes from its checkpoint and ends with the same numbers
    out2 = tmp_path / "interrupted"
    trained.clear()
    part = ablation.run_ablation(dataclasses.replace(base, max_steps=1), arms, [0, 1], out2, log=None)
    assert not part["complete"] and len(part["missing"]) == 8 and not (out2 / "cmc.png").exists()
    assert all(info["seeds"] == {} for info in part["arms"].values())
    ablation.run_ablation(base, arms, [0, 1], out2, log=lines.append)
    assert any("resuming from its checkpoint" in line for line in lines)
    assert _metrics_by_run(out2) == before

    # other settings in the same folder are refused before any work
    with pytest.raises(UserError, match="lr: 0.01 -> 0.02"):
        ablation.run_ablation(dataclasses.replace(base, lr=0.02), arms, [0, 1], out, log=None)


def write_regdb(root: Path, trials=(1, 2)) -> Path:
    """A tiny RegDB tree: 4 train and 3 test identities, 2 images per modality each."""
    rng = np.random.default_rng(0)
    for pid in range(7):
        for folder, mode in (("Visible", "RGB"), ("Thermal", "L")):
            for n in range(2):
                path = root / folder / str(pid) / f"{n}.bmp"
                path.parent.mkdir(parents=True, exist_ok=True)
                shape = (32, 16, 3) if mode == "RGB" else (32, 16)
                base = rng.integers(0, 255, size=shape[:2] + shape[2:], dtype=np.uint8)
                Image.fromarray((base // 2 + 20 * pid).astype(np.uint8), mode).save(path)
    (root / "idx").mkdir(parents=True, exist_ok=True)
    for trial in trials:
        order = np.random.default_rng(trial).permutation(7)
        split = {"train": sorted(order[:4]), "test": sorted(order[4:])}
        for part, ids in split.items():
            for name, folder in (("visible", "Visible"), ("thermal", "Thermal")):
                rows = [f"{folder}/{pid}/{n}.bmp {pid}" for pid in ids for n in range(2)]
                (root / "idx" / f"{part}_{name}_{trial}.txt").write_text("\n".join(rows) + "\n")
    return root


@pytest.mark.slow
def test_regdb_trials_from_the_command_line(tmp_path):
    root = write_regdb(tmp_path / "RegDB")
    out = tmp_path / "abl"
    cmd = [sys.executable, "-m", "mag_mmt.cli", "ablation", "--data", "regdb", "--root", str(root),
           "--regdb-trials", "1-2", "--arms", "B,+MMT", "--seeds", "0", "--epochs", "1", "--steps-per-epoch", "2",
           "-P", "2", "-K", "2", "--img-size", "32,16", "--device", "cpu", "--no-progress", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = json.loads((out / "results.json").read_text())
    assert saved["protocol"] == "regdb" and saved["regdb_trials"] == [1, 2]
    for arm in ("B", "+MMT"):
        row = saved["arms"][arm]["seeds"]["0"]
        per_trial = [json.loads((out / "runs" / ablation._slug(arm) / "seed0" / f"trial{t}" / "result.json")
                                .read_text())["metrics"] for t in (1, 2)]
        for m in ablation.METRICS:
            assert row[m] == pytest.approx((per_trial[0][m] + per_trial[1][m]) / 2)
            assert row["trials"]["1"][m] == per_trial[0][m]
        assert set(row["history"]) == {"1", "2"}
        cfgs = [json.loads((out / "runs" / ablation._slug(arm) / "seed0" / f"trial{t}" / "config.json").read_text())
                for t in (1, 2)]
        assert [c["regdb_trial"] for c in cfgs] == [1, 2]
    assert "n/a" in (out / "results.md").read_text()  # one seed: no interval
    assert "mean over splits [1, 2]" in (out / "results.md").read_text()


def test_cli_rejects_unknown_arms_and_bad_lists(tmp_path):
    from mag_mmt.cli import main

    with pytest.raises(SystemExit) as info:
        main(["ablation", "--arms", "B,+MMX", "--out", str(tmp_path / "x")])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        main(["ablation", "--seeds", "2-1", "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit):
        main(["ablation", "--regdb-trials", "1-3", "--out", str(tmp_path / "x")])  # not --data regdb
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    """2-process gloo torchrun: the trainer shards batches, rank 0 alone evaluates and writes."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mag_mmt.cli", "ablation", "--arms", "B,+MMT", "--seeds", "0", "--epochs", "1",
           "--steps-per-epoch", "2", "-P", "2", "-K", "2", "--trials", "1", "--device", "cpu", "--no-progress",
           "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("ablation: 2 arms") == 1 and proc.stdout.count("rank-1") == 2  # one line per run end, rank 0 only
    saved = json.loads((out / "results.json").read_text())
    assert saved["complete"] and set(saved["arms"]) == {"B", "+MMT"}
    for arm in ("b", "mmt"):
        assert json.loads((out / "runs" / arm / "seed0" / "result.json").read_text())["history"][0]["steps"] == 2
    assert math.isfinite(saved["arms"]["+MMT"]["summary"]["rank1"]["mean"])


# --------------------------------------------------------------------------- fast: aggregation and pictures


def fake_records(runs, seed_effect, offsets=None, trial_step=0.01):
    """A finished record per run with made-up metrics: arm offset + seed effect + trial effect."""
    offsets = offsets or {"B": 0.10, "+MMT": 0.15, "CE+BH": 0.12}
    records = {}
    for r in runs:
        value = offsets[r.arm] + seed_effect[r.seed] + trial_step * (r.trial or 0)
        metrics = {m: min(1.0, value + 0.05 * i) for i, m in enumerate(ablation.METRICS[:4])}
        metrics.update(mAP=value / 2, mINP=value / 4, cmc=[metrics["rank1"], metrics["rank5"], 1.0])
        history = [{"epoch": 1, "loss": 2.0 - value, "id_loss": 1.0, "triplet_loss": 1.0 - value}]
        records[id(r)] = {"metrics": metrics, "history": history, "seconds": 1.5, "trial": r.trial}
    return records


def test_aggregate_means_intervals_and_paired_tests(tmp_path):
    arms = ablation.select_arms("B,+MMT,CE+BH")
    base = tiny_base(data="regdb", root=str(tmp_path))
    runs = ablation.plan_runs(base, arms, [0, 1, 2], tmp_path, regdb_trials=[1, 2])
    payload = ablation.aggregate(base, arms, [0, 1, 2], [1, 2], runs, fake_records(runs, {0: 0.0, 1: 0.02, 2: 0.07}))
    assert payload["complete"] and payload["protocol"] == "regdb"
    b = payload["arms"]["B"]
    assert b["seeds"]["1"]["rank1"] == pytest.approx(0.10 + 0.02 + 0.015)  # mean over splits 1 and 2
    assert b["seeds"]["1"]["trials"]["2"]["rank1"] == pytest.approx(0.14)
    assert b["seeds"]["0"]["seconds"] == 3.0 and set(b["seeds"]["0"]["history"]) == {"1", "2"}
    assert b["summary"]["rank1"]["values"] == pytest.approx([0.115, 0.135, 0.185])
    pairs = {(c["arm"], c["reference"]): c for c in payload["comparisons"]}
    assert set(pairs) == {("+MMT", "B"), ("CE+BH", "B"), ("+MMT", "CE+BH")}
    mmt_b = pairs[("+MMT", "B")]["mAP"]
    assert mmt_b["diffs"] == pytest.approx([0.025] * 3) and mmt_b["p"] < 1e-6  # constant difference (up to rounding)
    # the same values on every seed: exactly constant differences, t infinite, p = 0, still strict JSON
    dyadic = fake_records(runs, {0: 0.0, 1: 0.0, 2: 0.0}, {"B": 0.25, "+MMT": 0.5, "CE+BH": 0.375}, 0.0)
    constant = ablation.aggregate(base, arms, [0, 1, 2], [1, 2], runs, dyadic)
    test = constant["comparisons"][0]["rank1"]
    assert test["p"] == 0.0 and test["t"] is None
    json.dumps(constant, allow_nan=False)
    ablation.write_outputs(tmp_path, payload)
    md = (tmp_path / "results.md").read_text()
    assert "| +MMT - B | mAP | +2.50, +2.50, +2.50 | +2.50 | [+2.50, +2.50] | <0.001 |" in md
    assert "3 seeds give the test 2 degrees of freedom: a weak test" in md
    for name in ("cmc.png", "training_curves.png", "table.png", "comparisons.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_one_seed_and_unfinished_runs(tmp_path):
    arms = ablation.select_arms("B,+MMT")
    base = tiny_base()
    runs = ablation.plan_runs(base, arms, [0, 1], tmp_path)
    records = fake_records(runs, {0: 0.0, 1: 0.03})
    records[id(runs[3])] = None  # +MMT seed 1 unfinished
    payload = ablation.aggregate(base, arms, [0, 1], None, runs, records)
    assert not payload["complete"] and payload["missing"] == ["+MMT seed 1"]
    assert set(payload["arms"]["+MMT"]["seeds"]) == {"0"}
    only = payload["comparisons"][0]
    assert only["seeds"] == [0] and only["rank1"]["p"] is None and only["rank1"]["low"] is None
    md = ablation.format_markdown(payload)
    assert "n/a" in md and "Incomplete: 1 runs unfinished" in md


def test_plot_helpers_reject_bad_input(tmp_path):
    from mag_mmt.visualize import save_table_image, save_training_curves

    with pytest.raises(ValueError, match="at least one run"):
        save_training_curves(tmp_path / "c.png", {"a": []})
    with pytest.raises(ValueError, match="mAP"):
        save_training_curves(tmp_path / "c.png", {"a": [{"epoch": 1, "loss": 1.0}]}, keys=["loss", "mAP"])
    with pytest.raises(ValueError, match="3 cells"):
        save_table_image(tmp_path / "t.png", ["a", "b", "c"], [["1", "2"]])
    path = save_training_curves(tmp_path / "c.png", {"a": [{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5}],
                                                     "b": [{"epoch": 1, "loss": 1.2}]})
    assert Image.open(path).size[0] > 400
