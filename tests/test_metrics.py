"""Tests of mag_mmt.evaluation.rank_metrics against the per-query numpy reference loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mag_mmt.evaluation import RankResult, rank_metrics
from reference_metrics import no_remove, reference_rank_metrics, same_camera_remove, sysu_remove

PROTOCOL_REFERENCE = {
    "sysu": (sysu_remove, True),
    "regdb": (no_remove, False),
    "standard": (no_remove, False),
    "same-camera": (same_camera_remove, False),
}


def assert_matches_reference(result: RankResult, ref: dict) -> None:
    np.testing.assert_array_equal(result.cmc, ref["cmc"])
    assert result.num_valid_queries == ref["num_valid"]
    np.testing.assert_array_equal(np.isnan(result.ap), np.isnan(ref["ap"]))
    valid = result.valid
    np.testing.assert_array_equal(valid, ~np.isnan(ref["ap"]))
    np.testing.assert_allclose(result.ap[valid], ref["ap"][valid], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(result.inp[valid], ref["inp"][valid])
    assert abs(result.mAP - ref["mAP"]) <= 1e-12
    assert abs(result.mINP - ref["mINP"]) <= 1e-12


@st.composite
def problems(draw):
    num_q = draw(st.integers(1, 12))
    num_g = draw(st.integers(1, 25))
    num_ids = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["ties", "continuous", "inf"]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    if kind == "continuous":
        dist = rng.random((num_q, num_g))
    else:
        dist = rng.integers(0, 3, (num_q, num_g)).astype(np.float64)  # many exact ties
        if kind == "inf":
            dist[rng.random((num_q, num_g)) < 0.3] = np.inf
    q_ids = rng.integers(0, num_ids, num_q) * 7 - 3  # arbitrary, negative ids allowed
    g_ids = rng.integers(0, num_ids, num_g) * 7 - 3
    q_cams = rng.integers(1, 7, num_q)
    g_cams = rng.integers(1, 7, num_g)
    chunk = draw(st.one_of(st.none(), st.integers(1, 5)))
    max_rank = draw(st.integers(1, 30))
    return dist.astype(dtype), q_ids, g_ids, q_cams, g_cams, chunk, max_rank


@settings(max_examples=120)
@given(problem=problems(), protocol=st.sampled_from(sorted(PROTOCOL_REFERENCE)))
def test_fast_path_equals_reference_loop(problem, protocol):
    dist, q_ids, g_ids, q_cams, g_cams, chunk, max_rank = problem
    remove, unique = PROTOCOL_REFERENCE[protocol]
    try:
        ref = reference_rank_metrics(dist, q_ids, g_ids, q_cams, g_cams, remove, unique, max_rank)
    except ValueError:
        with pytest.raises(ValueError, match="no query has a true match"):
            rank_metrics(dist, q_ids, g_ids, q_cams, g_cams, protocol=protocol, max_rank=max_rank, chunk_size=chunk)
        return
    result = rank_metrics(dist, q_ids, g_ids, q_cams, g_cams, protocol=protocol, max_rank=max_rank, chunk_size=chunk)
    assert len(result.cmc) == min(max_rank, dist.shape[1])
    assert_matches_reference(result, ref)


@settings(max_examples=40)
@given(problem=problems(), unique=st.booleans())
def test_custom_rules_and_cmc_override(problem, unique):
    dist, q_ids, g_ids, q_cams, g_cams, chunk, max_rank = problem
    mapping = {1: [2, 3], 4: [4]}

    def remove(q_cam, g_cams_ranked):
        return np.isin(g_cams_ranked, mapping.get(int(q_cam), []))

    def rule(qc, gc):
        return torch.stack([torch.isin(gc, torch.tensor(mapping.get(int(c), []), dtype=gc.dtype)) for c in qc])

    try:
        ref = reference_rank_metrics(dist, q_ids, g_ids, q_cams, g_cams, remove, unique, max_rank)
    except ValueError:
        return
    cmc = "unique" if unique else "standard"
    for protocol in (mapping, rule):
        result = rank_metrics(
            dist, q_ids, g_ids, q_cams, g_cams, protocol=protocol, max_rank=max_rank, chunk_size=chunk, cmc=cmc
        )
        assert_matches_reference(result, ref)


def test_hand_computed_sysu_example():
    # one cam-3 query of identity 1; gallery ranked by distance: id2(cam2) id1(cam2) id3(cam1) id1(cam4) id3(cam5)
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    g_ids = np.array([2, 1, 3, 1, 3])
    g_cams = np.array([2, 2, 1, 4, 5])
    r = rank_metrics(dist, [1], g_ids, [3], g_cams, protocol="sysu", max_rank=5)
    # cam-2 images removed: remaining id3 id1 id3 -> the match ranks 2nd
    np.testing.assert_array_equal(r.cmc, [0, 1, 1, 1, 1])
    assert r.mAP == pytest.approx(1 / 2)
    assert r.mINP == pytest.approx(1 / 2)
    assert r.match_rank.tolist() == [2]
    # a cam-6 query keeps camera 2: the match (index 1) ranks 2nd among images
    r6 = rank_metrics(dist, [1], g_ids, [6], g_cams, protocol="sysu", max_rank=5)
    assert r6.mAP == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert r6.mINP == pytest.approx(2 / 4)


def test_unique_identity_cmc_counts_each_identity_once():
    # ranked ids: 5 5 5 1 -> standard rank 4, distinct-identity rank 2
    dist = np.array([[0.1, 0.2, 0.3, 0.4]])
    g = np.array([5, 5, 5, 1])
    sysu = rank_metrics(dist, [1], g, [1], [1, 1, 1, 1], protocol="sysu", max_rank=4)
    regdb = rank_metrics(dist, [1], g, protocol="regdb", max_rank=4)
    np.testing.assert_array_equal(sysu.cmc, [0, 1, 1, 1])
    np.testing.assert_array_equal(regdb.cmc, [0, 0, 0, 1])
    assert sysu.mAP == regdb.mAP == pytest.approx(1 / 4)


def test_ties_are_broken_by_gallery_index():
    dist = np.zeros((2, 4))
    r = rank_metrics(dist, [7, 8], [1, 7, 8, 8], protocol="regdb", max_rank=4)
    assert r.match_rank.tolist() == [2, 3]
    assert r.ap.tolist() == [pytest.approx(1 / 2), pytest.approx((1 / 3 + 2 / 4) / 2)]


def test_queries_without_match_are_skipped():
    dist = np.array([[0.2, 0.1], [0.1, 0.2]])
    r = rank_metrics(dist, [1, 9], [1, 2], protocol="regdb")
    assert r.num_valid_queries == 1
    assert r.valid.tolist() == [True, False]
    assert np.isnan(r.ap[1]) and np.isnan(r.inp[1]) and r.match_rank[1] == -1
    np.testing.assert_array_equal(r.cmc, [0.0, 1.0])
    assert r.mAP == pytest.approx(0.5)


def test_cmc_length_and_short_curves_are_extended():
    # 2 gallery identities only: AGW's unique-identity rows would be shorter than max_rank
    dist = np.array([[0.3, 0.1, 0.2, 0.4]])
    r = rank_metrics(dist, [1], [1, 2, 2, 1], [1], [1, 1, 1, 1], protocol="sysu", max_rank=20)
    assert len(r.cmc) == 4
    np.testing.assert_array_equal(r.cmc, [0, 1, 1, 1])


def test_inputs_numpy_torch_lists_and_dtypes_agree():
    rng = np.random.default_rng(0)
    dist = rng.random((20, 30)).astype(np.float32)
    q, g = rng.integers(0, 5, 20), rng.integers(0, 5, 30)
    qc, gc = rng.integers(1, 7, 20), rng.integers(1, 7, 30)
    base = rank_metrics(dist, q, g, qc, gc)
    as_torch = rank_metrics(torch.from_numpy(dist), torch.from_numpy(q), torch.from_numpy(g), torch.from_numpy(qc), torch.from_numpy(gc))
    as_lists = rank_metrics(dist.tolist(), q.tolist(), g.tolist(), qc.tolist(), gc.tolist())
    as_int32 = rank_metrics(dist, q.astype(np.int32), g.astype(np.int32), qc.astype(np.int8), gc.astype(np.int8))
    for other in (as_torch, as_lists, as_int32):
        np.testing.assert_array_equal(other.cmc, base.cmc)
        assert other.mAP == base.mAP and other.mINP == base.mINP
    half = rank_metrics(torch.from_numpy(dist).half(), q, g, qc, gc)
    ref = reference_rank_metrics(torch.from_numpy(dist).half().numpy(), q, g, qc, gc)
    assert_matches_reference(half, ref)


def test_invariances_without_ties():
    rng = np.random.default_rng(1)
    dist = rng.random((15, 40))
    q, g = rng.integers(0, 6, 15), rng.integers(0, 6, 40)
    qc, gc = rng.integers(1, 7, 15), rng.integers(1, 7, 40)
    base = rank_metrics(dist, q, g, qc, gc, protocol="same-camera")
    perm = rng.permutation(40)
    permuted = rank_metrics(dist[:, perm], q, g[perm], qc, gc[perm], protocol="same-camera")
    scaled = rank_metrics(3.0 * dist + 1.0, q, g, qc, gc, protocol="same-camera")
    for other in (permuted, scaled):
        np.testing.assert_array_equal(other.cmc, base.cmc)
        np.testing.assert_allclose(other.mAP, base.mAP, rtol=1e-12)
        np.testing.assert_allclose(other.mINP, base.mINP, rtol=1e-12)


def test_unique_cmc_dominates_standard_and_shares_rank1():
    rng = np.random.default_rng(2)
    dist = rng.random((40, 60))
    q, g = rng.integers(0, 8, 40), rng.integers(0, 8, 60)
    qc, gc = rng.integers(1, 7, 40), rng.integers(1, 7, 60)
    uniq = rank_metrics(dist, q, g, qc, gc, protocol="sysu")
    std = rank_metrics(dist, q, g, qc, gc, protocol="sysu", cmc="standard")
    assert uniq.cmc[0] == std.cmc[0]
    assert np.all(uniq.cmc >= std.cmc) and np.any(uniq.cmc > std.cmc)
    assert np.all(np.diff(uniq.cmc) >= 0) and uniq.cmc[-1] <= 1
    assert uniq.mAP == std.mAP
    assert 0 < uniq.mINP <= uniq.mAP <= 1


def test_result_helpers():
    r = rank_metrics(np.array([[0.1, 0.9, 0.5]]), [1], [2, 1, 1], protocol="regdb")
    assert r.rank1 == 0.0 and r.rank(2) == 1.0
    d = r.as_dict(ranks=(1, 2, 10))
    assert set(d) == {"rank-1", "rank-2", "mAP", "mINP"}
    with pytest.raises(ValueError, match="k must be in 1..3"):
        r.rank(4)
    assert "mAP=" in repr(r)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(distmat=np.array([[np.nan, 1.0]])), "NaN"),
        (dict(distmat=np.zeros((2, 2, 1))), "2 dimensions"),
        (dict(distmat=np.zeros((1, 2), dtype=np.int64)), "floating"),
        (dict(query_ids=[1, 2]), "query_ids has 2 entries"),
        (dict(gallery_ids=[1]), "gallery_ids has 1 entries"),
        (dict(query_ids=[1.0]), "integer dtype"),
        (dict(query_cams=None), "needs query_cams"),
        (dict(gallery_cams=[1, 2, 3]), "same length"),
        (dict(protocol="market"), "protocol must be one of"),
        (dict(protocol=lambda qc, gc: torch.zeros(3)), "camera rule must return"),
        (dict(max_rank=0), "max_rank"),
        (dict(chunk_size=0), "chunk_size"),
        (dict(cmc="distinct"), "cmc must be"),
        (dict(query_ids=[5]), "no query has a true match"),
        (dict(distmat=np.zeros((0, 2)), query_ids=[], query_cams=[]), "at least one query"),
    ],
)
def test_bad_input_raises(kwargs, message):
    args = dict(
        distmat=np.array([[0.1, 0.2]]), query_ids=[1], gallery_ids=[1, 2], query_cams=[3], gallery_cams=[1, 2]
    )
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=message):
        rank_metrics(**args)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    rng = np.random.default_rng(3)
    dist = torch.from_numpy(rng.random((300, 500)).astype(np.float32))
    q, g = torch.from_numpy(rng.integers(0, 20, 300)), torch.from_numpy(rng.integers(0, 20, 500))
    qc, gc = torch.from_numpy(rng.integers(1, 7, 300)), torch.from_numpy(rng.integers(1, 7, 500))
    cpu = rank_metrics(dist, q, g, qc, gc, chunk_size=64)
    cuda = rank_metrics(dist.cuda(), q.cuda(), g.cuda(), qc.cuda(), gc.cuda(), chunk_size=64)
    np.testing.assert_array_equal(cpu.cmc, cuda.cmc)
    np.testing.assert_allclose(cpu.ap, cuda.ap, rtol=0, atol=1e-12)
    assert abs(cpu.mAP - cuda.mAP) < 1e-12 and abs(cpu.mINP - cuda.mINP) < 1e-12
