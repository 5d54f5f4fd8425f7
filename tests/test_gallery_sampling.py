"""AGW's exact SYSU-MM01 galleries (``gallery_sampling="agw"``) and re-ranking inside the
protocols, checked on a SYSU-MM01 folder layout written by the test against a re-implementation
of the loop in AGW's ``data_manager.process_gallery_sysu``."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from mag_mmt.data.sysu import read_sysu
from mag_mmt.errors import UserError
from mag_mmt.evaluation import (
    SYSU_SEARCH_CAMERAS,
    ReRanking,
    distance_matrix,
    evaluate_regdb,
    evaluate_sysu,
    rank_metrics,
    re_ranking,
    sample_gallery,
)
from tests.test_protocols import regdb_like, sysu_like

TEST_IDS = [12, 3, 150, 7, 41, 99]


def write_sysu(root, seed: int = 0) -> str:
    """cam1..cam6/<pid>/*.jpg and exp/*_id.txt; the test identities get 1-9 files per camera
    folder with names created in a shuffled order, and some camera folders are missing."""
    rng = np.random.default_rng(seed)
    root = str(root)
    for cam in range(1, 7):
        os.makedirs(os.path.join(root, f"cam{cam}"))
    os.makedirs(os.path.join(root, "exp"))
    for name, ids in (("train_id.txt", [1, 2]), ("val_id.txt", [5]), ("test_id.txt", TEST_IDS)):
        with open(os.path.join(root, "exp", name), "w") as f:
            f.write(",".join(str(i) for i in ids) + "\n")
    for pid in [1, 2, 5]:
        for cam in (1, 3):
            folder = os.path.join(root, f"cam{cam}", f"{pid:04d}")
            os.makedirs(folder)
            open(os.path.join(folder, "0001.jpg"), "wb").close()
    for pid in TEST_IDS:
        for cam in range(1, 7):
            if rng.random() < 0.2 and cam not in (3,):
                continue  # no folder for this identity under this camera
            folder = os.path.join(root, f"cam{cam}", f"{pid:04d}")
            os.makedirs(folder)
            numbers = rng.permutation(40)[: rng.integers(1, 10)]
            for k in numbers:
                open(os.path.join(folder, f"{int(k) + 1:04d}.jpg"), "wb").close()
    return root


def agw_process_gallery_sysu(data_path: str, mode: str, trial: int) -> list[str]:
    """The gallery files AGW's test.py evaluates in trial ``trial``: its loop, re-implemented
    (module-level ``random`` seeded with the trial, one choice per existing folder)."""
    cameras = ["cam1", "cam2", "cam4", "cam5"] if mode == "all" else ["cam1", "cam2"]
    with open(os.path.join(data_path, "exp/test_id.txt")) as f:
        ids = ["%04d" % int(y) for y in f.read().splitlines()[0].split(",")]
    state = random.getstate()
    try:
        random.seed(trial)
        files = []
        for pid in sorted(ids):
            for cam in cameras:
                img_dir = os.path.join(data_path, cam, pid)
                if os.path.isdir(img_dir):
                    files.append(random.choice(sorted([img_dir + "/" + i for i in os.listdir(img_dir)])))
    finally:
        random.setstate(state)
    return files


@pytest.mark.parametrize("mode", ["all", "indoor"])
def test_agw_sampling_picks_agw_images_trial_for_trial(tmp_path, mode):
    root = write_sysu(tmp_path / "SYSU-MM01")
    data = read_sysu(root, verify_images=False)
    pool = [s for s in data.gallery if s.camera in SYSU_SEARCH_CAMERAS[mode]]
    differs = 0
    for trial in range(10):
        ours = [pool[i].path for i in sample_gallery(pool, "single", trial=trial, sampling="agw")]
        assert ours == agw_process_gallery_sysu(root, mode, trial)
        differs += ours != [pool[i].path for i in sample_gallery(pool, "single", trial=trial)]
    assert differs > 0  # the default draw is another one
    # the order of the pool does not matter
    shuffled = [pool[i] for i in np.random.default_rng(1).permutation(len(pool))]
    picked = sorted(shuffled[i].path for i in sample_gallery(shuffled, "single", trial=3, sampling="agw"))
    assert picked == sorted(agw_process_gallery_sysu(root, mode, 3))


def test_evaluate_sysu_with_agw_galleries(tmp_path):
    root = write_sysu(tmp_path / "SYSU-MM01", seed=2)
    data = read_sysu(root, verify_images=False)
    g = torch.Generator().manual_seed(0)
    qf, gf = torch.randn(len(data.query), 5, generator=g), torch.randn(len(data.gallery), 5, generator=g)
    res = evaluate_sysu(qf, gf, data.query, data.gallery, trials=4, gallery_sampling="agw", distance="cosine")
    assert res.name == "SYSU-MM01 all-search single-shot (AGW galleries)"
    row = {s.path: i for i, s in enumerate(data.gallery)}
    q_ids = torch.tensor([s.identity for s in data.query])
    q_cams = torch.tensor([s.camera for s in data.query])
    for trial, got in enumerate(res.trials):
        cols = torch.tensor([row[p] for p in agw_process_gallery_sysu(root, "all", trial)])
        dist = distance_matrix(qf, gf[cols], "cosine")
        want = rank_metrics(dist, q_ids, torch.tensor([data.gallery[i].identity for i in cols]), q_cams,
                            torch.tensor([data.gallery[i].camera for i in cols]), protocol="sysu")
        np.testing.assert_allclose(got.cmc, want.cmc)
        assert got.mAP == pytest.approx(want.mAP)


def test_agw_sampling_refuses_multi_shot_and_seeds():
    qf, gf, query, pool = sysu_like()
    with pytest.raises(UserError, match="AGW has no multi-shot gallery"):
        evaluate_sysu(qf, gf, query, pool, shot="multi", gallery_sampling="agw")
    with pytest.raises(UserError, match="AGW has no multi-shot gallery"):
        sample_gallery(pool, 3, sampling="agw")
    with pytest.raises(UserError, match="seed must be 0"):
        evaluate_sysu(qf, gf, query, pool, seed=1, gallery_sampling="agw")
    with pytest.raises(UserError, match="gallery_sampling must be one of"):
        sample_gallery(pool, sampling="python")


def test_protocols_rerank_each_trial():
    qf, gf, query, pool = sysu_like(num_ids=5, per_cam=3, noise=1.2)
    params = ReRanking(k1=4, k2=2, lambda_value=0.3)
    res = evaluate_sysu(qf, gf, query, pool, trials=3, rerank=params)
    plain = evaluate_sysu(qf, gf, query, pool, trials=3)
    assert res.name == plain.name + " (re-ranked)"
    q_ids, q_cams = torch.tensor([s.identity for s in query]), torch.tensor([s.camera for s in query])
    for trial, got in enumerate(res.trials):
        cols = torch.from_numpy(sample_gallery(pool, "single", trial=trial))
        g = gf[cols]
        dist = re_ranking(distance_matrix(qf, g), distance_matrix(qf, qf), distance_matrix(g, g), 4, 2, 0.3)
        want = rank_metrics(dist, q_ids, torch.tensor([pool[i].identity for i in cols]), q_cams,
                            torch.tensor([pool[i].camera for i in cols]), protocol="sysu")
        np.testing.assert_allclose(got.cmc, want.cmc)
        assert got.mAP == pytest.approx(want.mAP)
    assert [t.mAP for t in res.trials] != [t.mAP for t in plain.trials]
    # RegDB: True means the paper's defaults, over the whole other modality
    feats, samples = regdb_like(0)
    out = evaluate_regdb(feats, feats, samples, samples, rerank=True, directions=("visible-to-thermal",))
    (result,) = out.values()
    vis = [i for i, s in enumerate(samples) if s.modality == 0]
    th = [i for i, s in enumerate(samples) if s.modality == 1]
    qv, gt = feats[vis], feats[th]
    dist = re_ranking(distance_matrix(qv, gt), distance_matrix(qv, qv), distance_matrix(gt, gt))
    want = rank_metrics(dist, [samples[i].identity for i in vis], [samples[i].identity for i in th], protocol="regdb")
    assert result.trials[0].mAP == pytest.approx(want.mAP)
    with pytest.raises(UserError, match="rerank must be"):
        evaluate_sysu(qf, gf, query, pool, rerank="yes")
