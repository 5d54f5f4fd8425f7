"""The loss's term weights through the training configuration and the command line."""

from __future__ import annotations

import pytest

from mag_mmt.cli import build_parser, main, train_config
from mag_mmt.training import TrainConfig, build_triplet
from mag_mmt.losses import MultiMaskingTripletLoss


@pytest.mark.parametrize("argv, mman, pos", [
    ([], 1.0, 1.0),
    (["--pos-weight", "0"], 1.0, 0.0),  # MMAN alone
    (["--mman-weight", "0"], 0.0, 1.0),  # MMAP alone
    (["--mman-weight", "0.5", "--pos-weight", "2"], 0.5, 2.0),
])
def test_cli_term_weights_reach_the_loss(argv, mman, pos):
    cfg = train_config(build_parser().parse_args(["train", *argv]))
    assert (cfg.mman_weight, cfg.pos_weight) == (mman, pos)
    crit = build_triplet(cfg)
    assert isinstance(crit, MultiMaskingTripletLoss)
    assert (crit.mman_weight, crit.pos_weight) == (mman, pos)


def test_old_configurations_default_to_both_terms():
    saved = {k: v for k, v in TrainConfig(pos_weight=0.5).to_dict().items() if k != "mman_weight"}
    cfg = TrainConfig.from_dict(saved)  # a checkpoint written before the field existed
    assert (cfg.mman_weight, cfg.pos_weight) == (1.0, 0.5)


@pytest.mark.parametrize("flag", ["--mman-weight", "--pos-weight"])
@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_bad_term_weight_is_named(flag, value, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["train", flag, value, "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    assert f"{flag[2:].replace('-', '_')} must be a finite number >= 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
