"""Tests of the evaluation protocols (SYSU-MM01, RegDB, NPU-ReID / manifest) and feature extraction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mag_mmt.data.records import THERMAL, VISIBLE, Sample
from mag_mmt.evaluation import (
    ProtocolResult,
    aggregate_splits,
    distance_matrix,
    evaluate_cross_modality,
    evaluate_regdb,
    evaluate_sysu,
    extract_features,
    format_table,
    rank_metrics,
    sample_gallery,
)


def sysu_like(num_ids=6, per_cam=12, dim=8, noise=0.8, seed=0):
    """Thermal queries (cams 3, 6) and a visible pool (cams 1, 2, 4, 5) with identity signal."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_ids, dim))
    query, pool, qf, gf = [], [], [], []
    for pid in range(num_ids):
        for cam in (3, 6):
            for k in range(3):
                query.append(Sample(f"cam{cam}/{pid:04d}/{k}.jpg", pid + 100, cam, THERMAL))
                qf.append(centers[pid] + noise * rng.normal(size=dim))
        for cam in (1, 2, 4, 5):
            for k in range(per_cam):
                pool.append(Sample(f"cam{cam}/{pid:04d}/{k}.jpg", pid + 100, cam, VISIBLE))
                gf.append(centers[pid] + noise * rng.normal(size=dim))
    return (
        torch.tensor(np.array(qf), dtype=torch.float32),
        torch.tensor(np.array(gf), dtype=torch.float32),
        query,
        pool,
    )


# --------------------------------------------------------------------------- gallery sampling


@settings(max_examples=30)
@given(
    sizes=st.lists(st.integers(1, 15), min_size=1, max_size=12),
    shot=st.sampled_from(["single", "multi", 3]),
    trial=st.integers(0, 20),
    seed=st.integers(0, 1000),
)
def test_sample_gallery_draws_shot_images_per_identity_and_camera(sizes, shot, trial, seed):
    pool = []
    for group, size in enumerate(sizes):
        pool += [Sample(f"{group}-{k}", group // 2, 1 + group % 2, VISIBLE) for k in range(size)]
    count = {"single": 1, "multi": 10, 3: 3}[shot]
    idx = sample_gallery(pool, shot, trial=trial, seed=seed)
    assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0)
    per_group: dict[tuple[int, int], int] = {}
    for i in idx:
        key = (pool[i].identity, pool[i].camera)
        per_group[key] = per_group.get(key, 0) + 1
    expected = {}
    for s in pool:
        expected[(s.identity, s.camera)] = expected.get((s.identity, s.camera), 0) + 1
    assert per_group == {k: min(count, n) for k, n in expected.items()}
    np.testing.assert_array_equal(idx, sample_gallery(pool, shot, trial=trial, seed=seed))


def test_sample_gallery_trials_differ_and_cameras_filter():
    pool = [Sample(f"{i}", i // 20, 1 + (i // 10) % 2, VISIBLE) for i in range(200)]
    draws = {tuple(sample_gallery(pool, "single", trial=t, seed=0)) for t in range(10)}
    assert len(draws) == 10
    other_seed = {tuple(sample_gallery(pool, "single", trial=t, seed=1)) for t in range(10)}
    assert other_seed != draws
    only_cam1 = sample_gallery(pool, "multi", cameras=[1], trial=0)
    assert {pool[i].camera for i in only_cam1} == {1} and len(only_cam1) == 100
    with pytest.raises(ValueError, match="shot must be"):
        sample_gallery(pool, "double")
    with pytest.raises(ValueError, match="trial"):
        sample_gallery(pool, "single", trial=-1)


# --------------------------------------------------------------------------- SYSU


@pytest.mark.parametrize("mode, cams", [("all", {1, 2, 4, 5}), ("indoor", {1, 2})])
@pytest.mark.parametrize("shot, count", [("single", 1), ("multi", 10)])
def test_evaluate_sysu_matches_rank_metrics_per_trial(mode, cams, shot, count):
    qf, gf, query, pool = sysu_like()
    result = evaluate_sysu(qf, gf, query, pool, mode=mode, shot=shot, trials=3, seed=5)
    assert result.name == f"SYSU-MM01 {mode}-search {shot}-shot"
    assert len(result.trials) == 3
    sub = [i for i, s in enumerate(pool) if s.camera in cams]
    sub_pool = [pool[i] for i in sub]
    dist = torch.cdist(qf, gf[sub])
    for trial, got in enumerate(result.trials):
        idx = sample_gallery(sub_pool, shot, trial=trial, seed=5)
        assert len(idx) == 6 * len(cams) * count
        want = rank_metrics(
            dist[:, idx],
            [s.identity for s in query],
            [sub_pool[i].identity for i in idx],
            [s.camera for s in query],
            [sub_pool[i].camera for i in idx],
            protocol="sysu",
        )
        np.testing.assert_array_equal(got.cmc, want.cmc)
        assert got.mAP == pytest.approx(want.mAP, abs=1e-6)
    maps = np.array([t.mAP for t in result.trials])
    assert result.mAP == pytest.approx(maps.mean())
    assert result.mAP_std == pytest.approx(maps.std(ddof=1))
    # seeded: the same call gives the same numbers
    again = evaluate_sysu(qf, gf, query, pool, mode=mode, shot=shot, trials=3, seed=5)
    assert [t.mAP for t in again.trials] == [t.mAP for t in result.trials]


def test_evaluate_sysu_perfect_features_and_cosine():
    qf, gf, query, pool = sysu_like(noise=0.0)
    for distance in ("euclidean", "cosine"):
        r = evaluate_sysu(qf, gf, query, pool, trials=2, distance=distance)
        assert r.cmc[0] == 1.0 and r.mAP == pytest.approx(1.0) and r.mAP_std == 0.0


def test_evaluate_sysu_rejects_bad_input():
    qf, gf, query, pool = sysu_like()
    bad_query = list(query)
    bad_query[4] = Sample("cam1/0000/x.jpg", 100, 1, VISIBLE)
    with pytest.raises(ValueError, match="cam1/0000/x.jpg"):
        evaluate_sysu(qf, gf, bad_query, pool, trials=1)
    with pytest.raises(ValueError, match="rows but there are"):
        evaluate_sysu(qf[:-1], gf, query, pool, trials=1)
    with pytest.raises(ValueError, match="mode"):
        evaluate_sysu(qf, gf, query, pool, mode="outdoor")
    with pytest.raises(ValueError, match="trials"):
        evaluate_sysu(qf, gf, query, pool, trials=0)


# --------------------------------------------------------------------------- RegDB


def regdb_like(seed, num_ids=8, per_id=4, dim=6):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_ids, dim))
    samples, feats = [], []
    for pid in range(num_ids):
        for modality, cam in ((VISIBLE, 1), (THERMAL, 2)):
            for k in range(per_id):
                samples.append(Sample(f"{modality}/{pid}/{k}", pid, cam, modality))
                feats.append(centers[pid] + rng.normal(size=dim))
    return torch.tensor(np.array(feats), dtype=torch.float32), samples


def test_evaluate_regdb_both_directions_and_aggregate():
    splits = []
    for seed in range(3):
        feats, samples = regdb_like(seed)
        res = evaluate_regdb(feats, feats, samples, samples)
        assert list(res) == ["visible-to-thermal", "thermal-to-visible"]
        vis = [i for i, s in enumerate(samples) if s.modality == VISIBLE]
        th = [i for i, s in enumerate(samples) if s.modality == THERMAL]
        for key, (qi, gi) in {"visible-to-thermal": (vis, th), "thermal-to-visible": (th, vis)}.items():
            want = rank_metrics(
                torch.cdist(feats[qi], feats[gi]),
                [samples[i].identity for i in qi],
                [samples[i].identity for i in gi],
                protocol="regdb",
            )
            np.testing.assert_array_equal(res[key].trials[0].cmc, want.cmc)
            assert res[key].mAP == pytest.approx(want.mAP, abs=1e-6)
        splits.append(res)
    merged = aggregate_splits(splits)
    assert len(merged["thermal-to-visible"].trials) == 3
    assert merged["thermal-to-visible"].mAP == pytest.approx(np.mean([s["thermal-to-visible"].mAP for s in splits]))
    with pytest.raises(ValueError, match="split 1 has settings"):
        aggregate_splits([splits[0], {"visible-to-thermal": splits[1]["visible-to-thermal"]}])
    with pytest.raises(ValueError, match="direction must be"):
        evaluate_regdb(feats, feats, samples, samples, directions=["up"])


# --------------------------------------------------------------------------- NPU-ReID / manifest


def npu_like(seed=0, num_ids=5, per_cam=4, dim=6):
    """Cameras 1-4 visible, 5-8 thermal; 1, 2, 5, 6 indoor."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_ids, dim))
    samples, feats = [], []
    for pid in range(num_ids):
        for cam in range(1, 9):
            modality = VISIBLE if cam <= 4 else THERMAL
            for k in range(per_cam):
                samples.append(Sample(f"c{cam}/{pid}/{k}", pid, cam, modality))
                feats.append(centers[pid] + 0.7 * rng.normal(size=dim))
    scene = {c: ("indoor" if c in (1, 2, 5, 6) else "outdoor") for c in range(1, 9)}
    return torch.tensor(np.array(feats), dtype=torch.float32), samples, scene


def test_evaluate_cross_modality_settings_and_scenes():
    feats, samples, scene = npu_like()
    res = evaluate_cross_modality(feats, feats, samples, samples, camera_scene=scene, trials=2, shots=("single", 2))
    expected = {
        f"{d}/{s}-search/{k}-shot"
        for d in ("visible-to-thermal", "thermal-to-visible")
        for s in ("all", "indoor", "outdoor")
        for k in ("single", 2)
    }
    assert set(res) == expected
    r = res["visible-to-thermal/indoor-search/single-shot"]
    assert r.name == "NPU-ReID visible-to-thermal/indoor-search/single-shot"
    # recompute trial 1 by hand: thermal indoor cameras 5, 6
    thermal = [s for s in samples if s.modality == THERMAL]
    t_idx = [i for i, s in enumerate(samples) if s.modality == THERMAL]
    v_idx = [i for i, s in enumerate(samples) if s.modality == VISIBLE]
    idx = sample_gallery(thermal, "single", cameras=[5, 6], trial=1, seed=0)
    assert {thermal[i].camera for i in idx} == {5, 6}
    want = rank_metrics(
        torch.cdist(feats[v_idx], feats[t_idx])[:, idx],
        [samples[i].identity for i in v_idx],
        [thermal[i].identity for i in idx],
        [samples[i].camera for i in v_idx],
        [thermal[i].camera for i in idx],
        protocol="same-camera",
    )
    np.testing.assert_array_equal(r.trials[1].cmc, want.cmc)
    assert r.trials[1].mAP == pytest.approx(want.mAP, abs=1e-6)


def test_cross_modality_skips_gallery_images_of_the_query_camera():
    # one camera id shared by both modalities: the wrong identity there is nearest
    q = [Sample("q", 1, 7, VISIBLE)]
    g = [Sample("same-cam-wrong", 2, 7, THERMAL), Sample("other-cam-right", 1, 8, THERMAL)]
    qf = torch.tensor([[0.0, 0.0]])
    gf = torch.tensor([[0.1, 0.0], [1.0, 0.0]])
    res = evaluate_cross_modality(qf, gf, q, g, directions=["visible-to-thermal"], shots=["single"], trials=1)
    assert res["visible-to-thermal/all-search/single-shot"].cmc[0] == 1.0
    plain = evaluate_cross_modality(
        qf, gf, q, g, directions=["visible-to-thermal"], shots=["single"], trials=1, camera_rule="standard"
    )
    assert plain["visible-to-thermal/all-search/single-shot"].cmc[0] == 0.0


def test_cross_modality_errors():
    feats, samples, scene = npu_like()
    with pytest.raises(ValueError, match="needs a camera_scene"):
        evaluate_cross_modality(feats, feats, samples, samples, searches=["indoor"])
    partial = {c: s for c, s in scene.items() if c != 7}
    with pytest.raises(ValueError, match=r"gallery cameras \[7\] have no scene"):
        evaluate_cross_modality(feats, feats, samples, samples, camera_scene=partial, trials=1)
    visible_only = [s for s in samples if s.modality == VISIBLE]
    vf = feats[: len(visible_only)]
    with pytest.raises(ValueError, match="no thermal gallery sample"):
        evaluate_cross_modality(vf, vf, visible_only, visible_only, trials=1)


# --------------------------------------------------------------------------- results and tables


def test_protocol_result_statistics_and_table():
    a = rank_metrics(np.array([[0.1, 0.9], [0.9, 0.1]]), [1, 1], [1, 2], protocol="regdb")
    b = rank_metrics(np.array([[0.9, 0.1], [0.9, 0.1]]), [1, 1], [1, 2], protocol="regdb")
    res = ProtocolResult("toy", [a, b])
    np.testing.assert_allclose(res.cmc, [0.25, 1.0])
    assert res.cmc_std[0] == pytest.approx(np.std([0.5, 0.0], ddof=1))
    assert res.mAP == pytest.approx((a.mAP + b.mAP) / 2)
    table = res.table(ranks=(1, 2, 10))
    lines = table.splitlines()
    assert lines[0].split(" | ")[0].strip() == "Setting"
    assert [c.strip() for c in lines[0].split("|")] == ["Setting", "Rank-1", "Rank-2", "Rank-10", "mAP", "mINP"]
    assert "25.00 +- 35.36" in lines[2] and lines[2].split("|")[3].strip() == "-"
    two = format_table({"first": res, "second": ProtocolResult.merge([res, res])}, std=False)
    assert len(two.splitlines()) == 4 and "+-" not in two
    assert len(ProtocolResult.merge([res, res]).trials) == 4
    with pytest.raises(ValueError, match="at least one trial"):
        ProtocolResult("empty", [])


def test_distance_matrix():
    x, y = torch.randn(7, 5), torch.randn(9, 5)
    torch.testing.assert_close(distance_matrix(x, y, chunk_size=3), torch.cdist(x, y), atol=1e-4, rtol=1e-4)
    cos = distance_matrix(x, y, "cosine")
    dot = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(y, dim=1).T
    torch.testing.assert_close(cos, 1 - dot, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="same feature size"):
        distance_matrix(x, torch.randn(3, 4))
    with pytest.raises(ValueError, match="distance must be"):
        distance_matrix(x, y, "manhattan")


# --------------------------------------------------------------------------- features


class AGWLike(torch.nn.Module):
    """modal 1 reads x1, modal 2 reads x2; not flip invariant; records its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(1.0))
        self.calls: list[tuple[int, bool]] = []

    def forward(self, x1, x2, modal):
        self.calls.append((modal, self.training))
        x = x1 if modal == 1 else x2
        cols = torch.arange(x.shape[-1], dtype=x.dtype)
        left = (x * cols).mean(dim=(1, 2, 3))
        return x.mean(dim=(2, 3)) * self.w, torch.stack([left, x.mean(dim=(1, 2, 3)) + 10 * (modal - 1)], 1)


def images_of(samples):
    table = {s.path: torch.randint(0, 256, (3, 4, 6), dtype=torch.uint8) for s in samples}
    return table, lambda s: table[s.path]


def test_extract_features_modal_order_flip_and_mode():
    samples = [Sample(f"s{i}", i, 1 if i % 3 else 3, VISIBLE if i % 3 else THERMAL) for i in range(7)]
    table, loader = images_of(samples)
    model = AGWLike().train()
    feats = extract_features(model, samples, loader=loader, batch_size=2)
    assert feats.shape == (7, 2) and feats.dtype == torch.float32
    assert model.training and all(not training for _, training in model.calls)
    assert {m for m, _ in model.calls} == {1, 2}
    for i, s in enumerate(samples):
        x = table[s.path].float().div(255)
        cols = torch.arange(6, dtype=torch.float32)
        expected = torch.stack([(x * cols).mean(), x.mean() + (10.0 if s.modality == THERMAL else 0.0)])
        torch.testing.assert_close(feats[i], expected)
    flipped = extract_features(model, samples, loader=loader, batch_size=3, flip=True)
    for i, s in enumerate(samples):
        x = table[s.path].float().div(255)
        cols = torch.arange(6, dtype=torch.float32)
        left = ((x * cols).mean() + (x.flip(-1) * cols).mean()) / 2
        torch.testing.assert_close(flipped[i, 0], left)
    forced = extract_features(model, samples, loader=loader, modal=2)
    assert torch.all(forced[:, 1] > 9)
    custom = extract_features(model, samples, loader=loader, forward=lambda x, m: model(x, x, m)[0])
    assert custom.shape == (7, 3)


def test_extract_features_errors():
    samples = [Sample("a", 0, 1, VISIBLE)]
    _, loader = images_of(samples)
    model = AGWLike()
    with pytest.raises(ValueError, match="modal must be"):
        extract_features(model, samples, loader=loader, modal=0)
    with pytest.raises(ValueError, match="at least one sample"):
        extract_features(model, [], loader=loader)
    with pytest.raises(ValueError, match="must return"):
        extract_features(model, samples, loader=loader, forward=lambda x, m: x)


@pytest.mark.parametrize("kind", ["sysu", "regdb", "manifest"])
@pytest.mark.parametrize("full", [False, True])
def test_evaluate_dataset_dispatches_on_the_readers_protocol(tmp_path, kind, full):
    """evaluate_dataset = the protocol function the dataset's kind names, with the same settings."""
    from layouts import write_manifest, write_regdb, write_sysu

    from mag_mmt.data import read_manifest, read_regdb, read_sysu
    from mag_mmt.evaluation import evaluate_dataset

    if kind == "sysu":
        data = read_sysu(write_sysu(tmp_path))
    elif kind == "regdb":
        data = read_regdb(write_regdb(tmp_path))
    else:
        data = read_manifest(write_manifest(tmp_path))
    g = torch.Generator().manual_seed(0)
    qf = torch.randn(len(data.query), 8, generator=g)
    gf = qf if data.gallery == data.query else torch.randn(len(data.gallery), 8, generator=g)
    got = evaluate_dataset(qf, gf, data, full=full, trials=3)
    if kind == "sysu":
        settings = [("all", "single"), ("all", "multi"), ("indoor", "single"), ("indoor", "multi")]
        want = [evaluate_sysu(qf, gf, data.query, data.gallery, mode=m, shot=s, trials=3)
                for m, s in (settings if full else settings[:1])]
    elif kind == "regdb":
        want = list(evaluate_regdb(qf, gf, data.query, data.gallery).values())
    else:
        want = list(evaluate_cross_modality(
            qf, gf, data.query, data.gallery, camera_scene=data.meta.get("camera_scene"), trials=3,
            searches=None if full else ["all"], shots=("single", "multi") if full else ("single",)).values())
    assert list(got) == [w.name for w in want]
    for w in want:
        np.testing.assert_array_equal(got[w.name].cmc, w.cmc)
        assert got[w.name].mAP == w.mAP


def test_evaluate_dataset_errors(tmp_path):
    from layouts import write_regdb

    from mag_mmt.data import read_regdb
    from mag_mmt.errors import UserError
    from mag_mmt.evaluation import evaluate_dataset

    data = read_regdb(write_regdb(tmp_path))
    qf = torch.zeros(len(data.query), 4)
    with pytest.raises(UserError, match="unknown protocol 'market'"):
        evaluate_dataset(qf, qf, data, protocol="market")
    with pytest.raises(UserError, match="gallery sampling 'agw' applies to the SYSU-MM01"):
        evaluate_dataset(qf, qf, data, gallery_sampling="agw")
    only_visible = data.__class__(**{**data.__dict__, "query": [s for s in data.query if s.modality == VISIBLE],
                                     "gallery": [s for s in data.gallery if s.modality == VISIBLE]})
    with pytest.raises(UserError, match="needs query images of one modality"):
        evaluate_dataset(qf, qf, only_visible)
