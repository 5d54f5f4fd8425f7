"""``mag-mmt demo``: the paper's six arms on the benchmark's generator; workers do not change numbers."""

from __future__ import annotations

import json

import pytest
import torch

from mag_mmt import ablation, demo


def test_demo_arms_are_the_papers_table_2():
    assert list(demo.ARMS) == ["B", "+MAG", "+MMTN", "+MMTP", "+MMT", "+MAG+MMT"]
    for name, fields in demo.ARMS.items():
        assert fields == ablation.DEFAULT_ARMS[name]
    assert demo.PRESETS["demo"].synthetic == "bench"  # the benchmark's generator, at a smaller budget
    assert [demo._slug(a) for a in ("+MAG+MMT", "B", "CE+BH")] == ["mag_mmt", "b", "ce_bh"]
    with pytest.raises(ValueError, match="workers must be >= 1"):
        demo.run_demo("unused", preset="tiny", workers=0)


@pytest.mark.slow
def test_demo_in_worker_processes_gives_the_numbers_of_one_process(tmp_path):
    arms = {name: demo.ARMS[name] for name in ("B", "+MAG+MMT")}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a worker, so that the sums run in the same order
    try:
        one = demo.run_demo(tmp_path / "one", preset="tiny", progress=False, log=lambda _m: None, arms=arms,
                            workers=1)
    finally:
        torch.set_num_threads(threads)
    two = demo.run_demo(tmp_path / "two", preset="tiny", progress=False, log=lambda _m: None, arms=arms, workers=2)
    assert two["workers"] == 2 and list(two["arms"]) == ["B", "+MAG+MMT"]
    for arm in arms:
        for key in ("rank1", "mAP", "mINP", "cmc", "final_loss"):
            assert one["arms"][arm][key] == pytest.approx(two["arms"][arm][key], rel=1e-4, abs=1e-6), (arm, key)
    saved = json.loads((tmp_path / "two" / "results.json").read_text())
    assert saved["arms"]["B"]["rank1"] == two["arms"]["B"]["rank1"]
    assert (tmp_path / "two" / "table.png").read_bytes()[:4] == b"\x89PNG"
