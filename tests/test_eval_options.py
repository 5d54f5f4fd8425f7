"""``mag-mmt eval`` options: --distance, --gallery-sampling agw, --rerank (and their errors)."""

from __future__ import annotations

import json
import re

import pytest

from mag_mmt.cli import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval_options") / "run"
    assert main(["train", "--data", "synthetic", "--epochs", "1", "--steps-per-epoch", "1", "-P", "2", "-K", "2",
                 "--max-steps", "1", "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    return out / "last.pt"


@pytest.mark.slow
def test_eval_with_agw_galleries_reranking_and_cosine(checkpoint, tmp_path, capsys):
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(checkpoint), "--trials", "2", "--device", "cpu",
                 "--gallery-sampling", "agw", "--rerank", "--rerank-k1", "5", "--rerank-k2", "2",
                 "--distance", "cosine", "--json", str(tmp_path / "opts.json")]) == 0
    printed = capsys.readouterr().out
    assert "SYSU-MM01 all-search single-shot (AGW galleries) (re-ranked)" in printed
    opts = json.loads((tmp_path / "opts.json").read_text())
    assert list(opts) == ["SYSU-MM01 all-search single-shot (AGW galleries) (re-ranked)"]
    mean, std = opts["SYSU-MM01 all-search single-shot (AGW galleries) (re-ranked)"]["mAP"]
    assert 0.0 < mean <= 1.0 and std >= 0.0


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra, message",
    [
        (["--gallery-sampling", "agw", "--full"], "AGW has no multi-shot gallery; drop --full"),
        (["--rerank", "--rerank-k1", "0"], "--rerank-k1 must be a positive int, got 0"),
        (["--rerank", "--rerank-lambda", "2"], r"--rerank-lambda must be in \[0, 1\], got 2.0"),
        (["--gallery-sampling", "agw", "--protocol", "npu"], "applies to the SYSU-MM01 protocol, not 'npu'"),
    ],
)
def test_eval_option_errors(checkpoint, extra, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "--checkpoint", str(checkpoint), "--trials", "1", "--device", "cpu", *extra])
    assert exit_.value.code == 2
    assert re.search(message, capsys.readouterr().err)
