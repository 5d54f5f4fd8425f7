"""What users get wrong, end to end: each mistake is a :class:`UserError` naming the file, line,
identity or argument, raised before any training step.

The mistakes (datasets on disk with one thing wrong) are the table ``MISTAKES`` of
``tests/layouts.py``; how ``mag-mmt`` prints them is tested in ``tests/test_cli_errors.py``.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from mag_mmt.checkpoint import load_checkpoint, save_checkpoint
from mag_mmt.cli import COMMANDS, build_parser, main
from mag_mmt.data import CrossModalityIdentitySampler, ImageDataset, read_sysu
from mag_mmt.data.images import check_image_file
from mag_mmt.errors import UserError
from tests.layouts import MISTAKES, TINY_TRAIN, truncate_after_header, write_sysu


def run_command(argv: list[str]) -> None:
    """The command's own function, without ``main``'s error printing."""
    args = build_parser().parse_args(argv)
    COMMANDS[args.command](args)


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_mistake_is_a_user_error_naming_it_before_training(mistake, tmp_path):
    argv, fragments = MISTAKES[mistake](tmp_path)
    ckpt = tmp_path / "out" / "last.pt"
    before = ckpt.read_bytes() if ckpt.exists() else None
    t0 = time.perf_counter()
    with pytest.raises(UserError) as info:
        run_command(argv)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    # caught before training: no checkpoint written or changed, and quickly
    assert (ckpt.read_bytes() if ckpt.exists() else None) == before
    assert time.perf_counter() - t0 < 30


def test_truncated_jpeg_header_opens_but_the_check_catches_it(tmp_path):
    """The file cut after its header still opens with PIL (so a header check passes); the
    end-of-data test catches it, and loading it during training names it too."""
    from PIL import Image

    root = write_sysu(tmp_path / "sysu")
    bad = truncate_after_header(root / "cam1" / "0001" / "0002.jpg")
    with Image.open(bad) as im:
        assert im.size == (8, 16)  # the header is intact
    with pytest.raises(UserError, match="truncated"):
        check_image_file(str(bad))
    data = read_sysu(root, verify_images=False)  # checks skipped: the loader still names the file
    index = [s.path for s in data.train].index(str(bad))
    with pytest.raises(UserError, match=str(bad)):
        ImageDataset(data.train)[index]
    good = root / "cam1" / "0001" / "0001.jpg"
    check_image_file(str(good))
    check_image_file(str(good), decode=True)


def test_jpeg_with_trailing_bytes_is_accepted(tmp_path):
    """Trailing bytes after the end-of-image marker fail the cheap test but decode fine."""
    root = write_sysu(tmp_path / "sysu")
    path = root / "cam1" / "0001" / "0001.jpg"
    path.write_bytes(path.read_bytes() + b"EXIF trailer from some camera")
    check_image_file(str(path))


@pytest.mark.parametrize(
    "labels, modalities, fragment",
    [
        ([0.0, 0.0, 1.0, 1.0], [0, 1, 0, 1], "labels must hold integers"),
        ([0, 0, 1, 1], [0.5, 1, 0, 1], "modalities must hold integers"),
        ([0, 0, 1, 1], [0, 1, 0, 2], "index 3 holds 2"),
    ],
)
def test_sampler_rejects_float_labels_and_bad_modalities(labels, modalities, fragment):
    with pytest.raises(UserError, match=fragment):
        CrossModalityIdentitySampler(labels, modalities, num_identities=1, num_instances=1)


def test_sampler_rejects_float_identities_in_samples():
    from mag_mmt.data import Sample

    samples = [Sample("a", 1.5, 1, 0), Sample("b", 1.5, 3, 1)]
    with pytest.raises(UserError, match="sample identities must hold integers"):
        CrossModalityIdentitySampler(samples, num_identities=1, num_instances=1)


@pytest.mark.slow
def test_nan_features_at_evaluation_name_the_image(tmp_path, capsys, regdb_root):
    """A diverged checkpoint (NaN weights) evaluated on RegDB: the error names an image."""
    out = tmp_path / "run"
    assert main(["train", "--data", "regdb", "--root", str(regdb_root), *TINY_TRAIN, "--steps-per-epoch", "1",
                 "--epochs", "1", "--out", str(out)]) == 0
    state = load_checkpoint(out / "last.pt", kind="train")
    state["model"] = {k: v.float().fill_(float("nan")) if v.is_floating_point() else v
                      for k, v in state["model"].items()}
    save_checkpoint({k: v for k, v in state.items() if k != "format"}, out / "nan.pt")
    with pytest.raises(UserError, match=r"NaN or infinite values in \d+ of \d+ rows, first for '.*\.bmp'"):
        run_command(["eval", "--checkpoint", str(out / "nan.pt"), "--trials", "1"])


def test_nan_features_in_protocol_functions_name_the_sample():
    from mag_mmt.data import Sample
    from mag_mmt.evaluation import evaluate_regdb

    q = [Sample("v0.bmp", 0, 1, 0), Sample("t0.bmp", 0, 2, 1), Sample("v1.bmp", 1, 1, 0), Sample("t1.bmp", 1, 2, 1)]
    feats = torch.randn(4, 3)
    feats[2, 1] = float("nan")
    with pytest.raises(UserError, match="query_feats .* 1 of 4 rows, first for 'v1.bmp' .identity 1"):
        evaluate_regdb(feats, feats, q, q)
    feats[2, 1] = float("inf")
    with pytest.raises(UserError, match="v1.bmp"):
        evaluate_regdb(feats, feats, q, q)
    feats[2, 1] = 0.0
    assert set(evaluate_regdb(feats, feats, q, q)) == {"visible-to-thermal", "thermal-to-visible"}


def test_protocol_that_does_not_fit_the_data_is_a_user_error(tmp_path):
    """``eval --protocol sysu`` on RegDB-shaped data names the first query that breaks the rules."""
    from mag_mmt.data import ReIDData, Sample
    from mag_mmt.training import run_protocol
    from mag_mmt.models import build_model

    test = [Sample(f"x{i}", i // 2, 1 + i % 2, i % 2) for i in range(4)]
    data = ReIDData("regdb-1", [], test, test, loader=lambda s: torch.zeros(3, 16, 8, dtype=torch.uint8),
                    protocol="regdb")
    model = build_model("small-cnn", 2)
    with pytest.raises(UserError, match="SYSU-MM01 queries must be thermal images from cameras 3 and 6, got 'x0' .visible, camera 1."):
        run_protocol(model, data, (16, 8), protocol="sysu", trials=1)
    assert list(run_protocol(model, data, (16, 8), trials=1)) == ["RegDB visible-to-thermal", "RegDB thermal-to-visible"]
    with pytest.raises(UserError, match="protocol must be one of sysu, regdb, npu"):
        ReIDData("x", [], [], [], protocol="market")


def test_check_cost_is_small_against_decoding(tmp_path):
    """The end-of-data test reads a header and 64 bytes; it must stay well under a full decode
    of a realistically sized image (SYSU-MM01 images are a few hundred pixels a side)."""
    from PIL import Image

    path = tmp_path / "big.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (480, 320, 3), dtype=np.uint8)).save(path, quality=90)

    def timed(fn, repeats=20):
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(repeats):
                fn()
            best = min(best, (time.perf_counter() - t0) / repeats)
        return best

    cheap = timed(lambda: check_image_file(str(path)))
    full = timed(lambda: check_image_file(str(path), decode=True))
    assert cheap < full / 2, (cheap, full)
