"""Safe checkpoint loading: no loader runs code from a file; every failure names its cause.

Crafted files whose pickles call ``os.system("touch MARKER")`` when unpickled with
``weights_only=False`` go through every loader of the project (functions and the command
line); each must refuse with a clear error and the marker must never appear. Old-format
(``mag-mmt/1``) files are refused with a conversion hint, and the converter turns them into
files that resume training exactly.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from mag_mmt.checkpoint import (
    CheckpointError,
    convert_legacy_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from mag_mmt.cli import main
from mag_mmt.training import load_init, model_from_checkpoint, train
from mag_mmt.errors import UserError
from mag_mmt.models import build_model
from mag_mmt.models.dual_swin import load_swin_state_dict
from mag_mmt.pretrain import load_pretrained
from tests.train_helpers import small_cfg as _cfg, small_data, assert_same_weights as _same_weights


class RunsCode:
    """Unpickling this runs ``os.system(command)`` (what a malicious checkpoint does)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _malicious_files(folder: Path, marker: Path) -> dict[str, Path]:
    """Files that run ``touch marker`` if loaded unsafely, in every disguise we could think of."""
    evil = RunsCode(f"touch {marker}")
    weights = {"w": torch.zeros(2)}
    variants = {
        # claims the current format and kind, payload next to real weights
        "current-format": {"format": "mag-mmt/2", "kind": "train", "model": weights, "config": evil},
        # the payload *is* the model entry
        "model-payload": {"format": "mag-mmt/2", "kind": "train", "model": evil},
        # an old-format file with a payload: the old-format message, but nothing runs
        "old-format": {"format": "mag-mmt/1", "kind": "train", "model": weights, "rng": evil},
        "pretrain": {"format": "mag-mmt/2", "kind": "pretrain", "model": weights, "meta": evil},
        "bare-object": evil,
    }
    paths = {}
    for name, obj in variants.items():
        paths[name] = folder / f"{name}.pt"
        torch.save(obj, paths[name])
    paths["legacy-serialization"] = folder / "legacy-serialization.pt"
    torch.save(variants["current-format"], paths["legacy-serialization"], _use_new_zipfile_serialization=False)
    return paths


@pytest.fixture
def malicious(tmp_path):
    marker = tmp_path / "MARKER"
    folder = tmp_path / "files"
    folder.mkdir()
    yield _malicious_files(folder, marker), marker
    assert not marker.exists(), "a loader ran code from a checkpoint"


@pytest.fixture(scope="module")
def data():
    return small_data()


REFUSED = r"refused to load|old format|holds an object|not a mag-mmt"


def test_marker_payload_really_runs_when_loaded_unsafely(tmp_path):
    """The crafted files are real exploits: an unsafe load creates the marker (so the tests
    below that see no marker mean something)."""
    marker = tmp_path / "MARKER"
    torch.save({"format": "mag-mmt/2", "model": RunsCode(f"touch {marker}")}, tmp_path / "x.pt")
    torch.load(tmp_path / "x.pt", weights_only=False)
    assert marker.exists()


def test_every_function_loader_refuses_code(malicious, tmp_path, data):
    paths, marker = malicious
    model = build_model("small-cnn", num_classes=3)
    loaders = {
        "load_checkpoint": lambda p: load_checkpoint(p),
        "load_checkpoint(train)": lambda p: load_checkpoint(p, kind="train"),
        "load_checkpoint(pretrain)": lambda p: load_checkpoint(p, kind="pretrain"),
        "load_checkpoint(meta)": lambda p: load_checkpoint(p, map_location="meta"),
        "model_from_checkpoint": lambda p: model_from_checkpoint(str(p)),
        "load_init": lambda p: load_init(model, str(p)),
        "load_pretrained": lambda p: load_pretrained(model, p),
        "convert_legacy_checkpoint": lambda p: convert_legacy_checkpoint(p, tmp_path / "converted.pt"),
    }
    for name, path in paths.items():
        for loader_name, loader in loaders.items():
            with pytest.raises(CheckpointError) as exc:
                loader(path)
            message = str(exc.value)
            assert str(path) in message, (name, loader_name, message)
            assert "posix.system" in message or "os.system" in message or "nt.system" in message, (name, message)
            assert not marker.exists(), (name, loader_name)
        with pytest.raises(ValueError, match="could not read Swin weights"):  # the Swin loader stays safe
            load_swin_state_dict(path)
    assert not (tmp_path / "converted.pt").exists()


def test_training_refuses_code_in_init_and_resume(malicious, tmp_path, data):
    paths, marker = malicious
    for name, path in paths.items():
        with pytest.raises(CheckpointError, match=REFUSED):
            train(_cfg(tmp_path / "init", init=str(path)), data=data, log=None)
        run = tmp_path / f"resume-{name}"
        run.mkdir()
        (run / "last.pt").write_bytes(path.read_bytes())
        with pytest.raises(CheckpointError, match=REFUSED):
            train(_cfg(run, resume=True), data=data, log=None)
        assert not marker.exists(), name


def _cli_fails(argv: list[str], capsys) -> str:
    """Run the CLI in-process; it must fail. Returns the error text (printed or raised)."""
    try:
        code = main(argv)
    except SystemExit as exc:
        assert exc.code not in (0, None)
        return capsys.readouterr().err
    except UserError as exc:  # until the CLI prints every UserError itself
        return str(exc)
    raise AssertionError(f"{argv} exited with {code}")


def test_cli_refuses_code_in_every_checkpoint_argument(malicious, tmp_path, capsys):
    paths, marker = malicious
    common = ["--epochs", "1", "--steps-per-epoch", "1", "-P", "2", "-K", "2", "--no-progress", "--device", "cpu"]
    for name, path in paths.items():
        run = tmp_path / f"run-{name}"
        run.mkdir()
        (run / "last.pt").write_bytes(path.read_bytes())
        calls = {
            "eval": ["eval", "--checkpoint", str(path), "--device", "cpu"],
            "train --init": ["train", "--init", str(path), "--out", str(tmp_path / "o"), *common],
            "train --resume": ["train", "--resume", "--out", str(run), *common],
            "convert-checkpoint": ["convert-checkpoint", str(path), str(tmp_path / "new.pt")],
        }
        for what, argv in calls.items():
            message = _cli_fails(argv, capsys)
            assert "system" in message and ("refused" in message or "old format" in message
                                            or "trust-source" in message), (name, what, message)
            assert not marker.exists(), (name, what)
    assert not (tmp_path / "new.pt").exists()


def test_converter_runs_code_only_when_trusted(tmp_path):
    """``--trust-source`` is the one way a file's code runs: with a warning, on request."""
    marker = tmp_path / "MARKER"
    src = tmp_path / "old.pt"
    torch.save({"format": "mag-mmt/1", "kind": "train", "model": {"w": torch.ones(1)}, "x": RunsCode(f"touch {marker}")}, src)
    with pytest.raises(CheckpointError, match="trust"):
        convert_legacy_checkpoint(src, tmp_path / "new.pt")
    assert not marker.exists()
    with pytest.warns(UserWarning, match="runs any code"):
        convert_legacy_checkpoint(src, tmp_path / "new.pt", trust_source=True)
    assert marker.exists()
    assert load_checkpoint(tmp_path / "new.pt")["x"] == 0  # os.system's exit status, now plain data


def _as_mag_mmt_1(state: dict) -> dict:
    """The layout mag-mmt/1 wrote: numpy's and Python's random states as returned by their getters."""
    rng = state["rng"]["ranks"][0]
    npy = rng["numpy"]
    old = {k: v for k, v in state.items() if k not in ("format", "num_train_images")}
    old["format"] = "mag-mmt/1"
    old["rng"] = {
        "python": (rng["python"]["version"], tuple(rng["python"]["internal"]), rng["python"]["gauss_next"]),
        "numpy": (npy["bit_generator"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                  npy["cached_gaussian"]),
        "torch": rng["torch"], "augment": rng["augment"],
    }
    old["config"] = {k: v for k, v in state["config"].items() if k != "epoch_unit"}
    old["history"] = [{**row, "loss": np.float64(row["loss"])} for row in state["history"]]  # numpy scalars too
    return old


@pytest.mark.slow
def test_old_format_is_refused_with_a_hint_and_converts_to_an_exact_resume(tmp_path, data, capsys):
    kw = dict(epoch_unit="identities", epochs=2)
    straight = train(_cfg(tmp_path / "straight", **kw), data=data, log=None)
    train(_cfg(tmp_path / "new", max_steps=3, **kw), data=data, log=None)
    old_dir = tmp_path / "old"
    old_dir.mkdir()
    torch.save(_as_mag_mmt_1(load_checkpoint(tmp_path / "new" / "last.pt")), old_dir / "last.pt")
    with pytest.raises(CheckpointError, match=r"old format mag-mmt/1.*mag-mmt convert-checkpoint"):
        load_checkpoint(old_dir / "last.pt")
    with pytest.raises(CheckpointError, match="old format"):
        train(_cfg(old_dir, resume=True, **kw), data=data, log=None)
    # the converter needs no trust for numpy arrays of numbers, and the result resumes exactly
    assert main(["convert-checkpoint", str(old_dir / "last.pt"), str(tmp_path / "converted.pt")]) == 0
    assert "wrote" in capsys.readouterr().out
    converted = load_checkpoint(tmp_path / "converted.pt", kind="train")
    assert converted["format"] == "mag-mmt/2" and converted["rng"]["world_size"] == 1
    assert isinstance(converted["history"][0]["loss"], float)
    os.replace(tmp_path / "converted.pt", old_dir / "last.pt")
    with pytest.raises(UserError, match="epoch_unit: 'identities' -> 'images'"):  # old files counted identities
        train(_cfg(old_dir, resume=True, epochs=2), data=data, log=None)
    resumed = train(_cfg(old_dir, resume=True, **kw), data=data, log=None)
    _same_weights(straight.model, resumed.model)
    message = _cli_fails(["convert-checkpoint", str(old_dir / "last.pt"), str(tmp_path / "again.pt")], capsys)
    assert "already has format mag-mmt/2" in message


def test_errors_name_the_cause(tmp_path):
    path = save_checkpoint({"kind": "pretrain", "model": {"w": torch.ones(3)}}, tmp_path / "p.pt")
    with pytest.raises(CheckpointError, match=r"MMGL pre-training checkpoint.*expected a training.*--init"):
        load_checkpoint(path, kind="train")
    with pytest.raises(CheckpointError, match="device mismatch.*CUDA is not available") if not torch.cuda.is_available() \
            else pytest.raises(AssertionError):
        load_checkpoint(path, map_location="cuda")
        raise AssertionError("CUDA present: loading onto it is fine")
    torch.save({"format": "mag-mmt/9", "model": {}}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format mag-mmt/9, written by another version"):
        load_checkpoint(tmp_path / "future.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"\(0 bytes\).*truncated"):
        load_checkpoint(tmp_path / "empty.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a file written by torch.save"):
        load_checkpoint(tmp_path / "text.pt")
    with pytest.raises(CheckpointError, match="is not a file"):
        load_checkpoint(tmp_path)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not a mag-mmt checkpoint"):
        load_checkpoint(tmp_path / "list.pt")


def test_save_keeps_to_plain_data(tmp_path):
    state = {"kind": "train", "model": {"w": torch.ones(2)}, "history": [{"loss": np.float32(0.5), "n": np.int64(3)}],
             "config": {"root": Path("/data"), "size": (2, 3)}, "keys": np.arange(3, dtype=np.uint32)}
    loaded = load_checkpoint(save_checkpoint(state, tmp_path / "c.pt"))
    assert loaded["history"] == [{"loss": 0.5, "n": 3}] and type(loaded["history"][0]["n"]) is int
    assert loaded["config"] == {"root": "/data", "size": (2, 3)}
    assert torch.equal(loaded["keys"], torch.arange(3, dtype=torch.int64).to(torch.uint32))
    with pytest.raises(TypeError, match=r"'checkpoint.config.loss_fn' is a builtins.function"):
        save_checkpoint({"kind": "train", "model": {}, "config": {"loss_fn": lambda x: x}}, tmp_path / "d.pt")
    assert not (tmp_path / "d.pt").exists()


def test_rng_states_stay_on_the_cpu_whatever_map_location(tmp_path):
    """``map_location`` moves the weights, never the random states (``meta`` stands in for a
    GPU: a state moved there could not be restored)."""
    gen = torch.Generator().manual_seed(11)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = {"kind": "train", "model": {"w": torch.ones(4)}, "rng": {"world_size": 1, "ranks": [rng_state(gen)]}}
    path = save_checkpoint(state, tmp_path / "c.pt")
    expected = (random.random(), np.random.rand(), torch.rand(2), torch.rand(2, generator=gen))
    loaded = load_checkpoint(path, map_location="meta")
    assert loaded["model"]["w"].device.type == "meta"
    rng = loaded["rng"]["ranks"][0]
    assert rng["torch"].device.type == "cpu" and rng["augment"].device.type == "cpu"
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    gen.manual_seed(9)
    set_rng_state(rng, gen)
    again = (random.random(), np.random.rand(), torch.rand(2), torch.rand(2, generator=gen))
    assert again[:2] == expected[:2] and torch.equal(again[2], expected[2]) and torch.equal(again[3], expected[3])
    with pytest.raises(CheckpointError, match="meta"):  # a state that did lose its data says so
        set_rng_state({**rng, "torch": rng["torch"].to("meta")})


@pytest.mark.slow
def test_file_written_on_a_gpu_loads_on_a_cpu(tmp_path, data, monkeypatch):
    run = train(_cfg(tmp_path / "a", max_steps=1), data=data, log=None)
    state = load_checkpoint(tmp_path / "a" / "last.pt")
    with monkeypatch.context() as m:  # tag every storage "cuda:0", as torch.save does on a GPU
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        gpu_file = save_checkpoint(state, tmp_path / "gpu.pt")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):  # really a CUDA-tagged file
            torch.load(gpu_file, weights_only=True)
    model, _cfg_of_run, loaded = model_from_checkpoint(str(gpu_file))
    _same_weights(model, run.model)
    assert loaded["rng"]["ranks"][0]["torch"].device.type == "cpu"
    # and training resumes from it on the CPU
    os.replace(gpu_file, tmp_path / "a" / "last.pt")
    resumed = train(_cfg(tmp_path / "a", resume=True, max_steps=2), data=data, log=None)
    assert load_checkpoint(tmp_path / "a" / "last.pt")["step"] == 2 and resumed.stopped_early


def test_augment_state_of_another_device_type_warns_and_keeps_the_fresh_seed():
    """A CUDA generator's state (16 bytes) resumed into a CPU generator (or the reverse): the
    run goes on with a warning instead of a crash; the generator keeps its own seed."""
    from mag_mmt.checkpoint import rng_state, set_rng_state

    state = rng_state(torch.Generator().manual_seed(1))
    state["augment"] = torch.zeros(16, dtype=torch.uint8)  # the size of a CUDA generator's state
    g = torch.Generator().manual_seed(7)
    before = g.get_state().clone()
    with pytest.warns(UserWarning, match="another device type"):
        set_rng_state(state, g)
    assert torch.equal(g.get_state(), before)
