"""How ``mag-mmt`` reports input mistakes: the usage line and ``mag-mmt: error: ...``, exit
status 2, no traceback (``--debug`` adds it); any other exception keeps its traceback.

The mistakes are those of ``tests/layouts.py`` (datasets on disk with one thing wrong).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mag_mmt.training import loop
from mag_mmt.cli import main
from tests.layouts import MISTAKES

#: the common mistakes users were seen to make (resuming against another dataset is tested
#: with the checkpoint checks)
COMMON = [
    "truncated_jpeg",
    "identity_without_thermal",
    "idx_line_missing_image",
    "unknown_modality_word",
    "duplicate_manifest_path",
    "missing_root",
    "truncated_checkpoint",
    "too_many_identities_per_batch",
    "image_size_zero",
]


def assert_short_error(stderr: str, fragments: list[str]) -> None:
    assert stderr.startswith("usage: mag-mmt"), stderr
    error = [line for line in stderr.splitlines() if line.startswith("mag-mmt: error: ")]
    assert len(error) == 1, stderr
    text = stderr[stderr.index("mag-mmt: error: "):]
    for fragment in fragments:
        assert fragment in text, (fragment, stderr)
    assert "Traceback" not in stderr


@pytest.mark.parametrize("mistake", COMMON)
def test_mistake_is_one_error_line_with_exit_status_2(mistake, tmp_path, capsys):
    argv, fragments = MISTAKES[mistake](tmp_path)
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert_short_error(captured.err, fragments)
    assert "final:" not in captured.out


def test_truncated_checkpoint_given_to_eval(tmp_path, capsys):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(SystemExit) as info:
        main(["eval", "--checkpoint", str(bad)])
    assert info.value.code == 2
    assert_short_error(capsys.readouterr().err, [str(bad)])


def test_debug_shows_the_traceback_of_an_input_error(tmp_path, capsys):
    argv, fragments = MISTAKES["missing_root"](tmp_path)
    for position in ("before", "after"):  # a global flag, accepted after the command too
        args = ["--debug", *argv] if position == "before" else [*argv, "--debug"]
        with pytest.raises(SystemExit) as info:
            main(args)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" in err and "UserError" in err
        assert "mag-mmt: error: " in err and fragments[0] in err


def test_other_exceptions_keep_their_traceback(tmp_path, monkeypatch):
    def broken(_cfg):
        raise RuntimeError("a bug, not an input mistake")

    monkeypatch.setattr(loop, "train", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["train", "--out", str(tmp_path / "o"), "--no-progress"])


@pytest.mark.slow
@pytest.mark.parametrize("mistake", ["truncated_jpeg"])
def test_console_script_prints_one_line_and_exits_2(mistake, tmp_path):
    """The real entry point, as a user runs it (``--debug`` is tested in-process above)."""
    argv, fragments = MISTAKES[mistake](tmp_path)
    proc = subprocess.run([sys.executable, "-m", "mag_mmt.cli", *argv], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert_short_error(proc.stderr, fragments)
