"""k-reciprocal re-ranking: the vectorised torch version equals a plain loop reading of Zhong
et al.'s algorithm (numpy, one image at a time) on small inputs, ties included."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mag_mmt.errors import UserError
from mag_mmt.evaluation.reranking import ReRanking, re_ranking


def reference_re_ranking(qg: np.ndarray, qq: np.ndarray, gg: np.ndarray, k1: int, k2: int, lam: float) -> np.ndarray:
    """Per image, with Python sets: squared distances scaled per column then transposed,
    k-reciprocal sets, their expansion by the 2/3 rule, exp weights, local query expansion
    over the k2 nearest, Jaccard over query x gallery, blend with lambda. Ties: stable order."""
    q = qg.shape[0]
    full = np.block([[qq, qg], [qg.T, gg]]).astype(np.float32) ** 2
    full = (full / np.maximum(full.max(axis=0, keepdims=True), np.finfo(np.float32).tiny)).T
    n = full.shape[0]
    order = np.argsort(full, axis=1, kind="stable")

    def reciprocal(i: int, k: int) -> list[int]:
        return [int(j) for j in order[i, : k + 1] if i in order[j, : k + 1]]

    half = int(np.around(k1 / 2.0))
    v = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        base = reciprocal(i, k1)
        members = set(base)
        for c in base:
            cand = reciprocal(c, half)
            if len(set(cand) & set(base)) > 2.0 / 3 * len(cand):
                members |= set(cand)
        cols = sorted(members)
        if cols:
            w = np.exp(-full[i, cols])
            v[i, cols] = w / w.sum()
    if k2 != 1:
        v = np.stack([v[order[i, :k2]].mean(axis=0) for i in range(n)])
    out = np.zeros((q, n - q), dtype=np.float64)
    for i in range(q):
        for j in range(q, n):
            m = float(np.minimum(v[i], v[j]).sum())
            jac = 1 - m / (2 - m)
            out[i, j - q] = jac * (1 - lam) + float(full[i, j]) * lam
    return out


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)).astype(np.float32)


cases = st.builds(
    lambda q, g, d, k1, k2, lam, seed, grid: (q, g, d, k1, k2, lam, seed, grid),
    st.integers(1, 6),  # queries
    st.integers(1, 8),  # gallery
    st.integers(1, 3),  # feature size
    st.integers(1, 8),  # k1
    st.integers(1, 5),  # k2
    st.sampled_from([0.0, 0.3, 0.5, 1.0]),
    st.integers(0, 2**31 - 1),
    st.booleans(),  # integer grid features: many tied distances
)


@settings(max_examples=80, deadline=None)
@given(cases)
def test_equals_plain_reference(case):
    q, g, d, k1, k2, lam, seed, grid = case
    rng = np.random.default_rng(seed)
    if grid:
        qf, gf = rng.integers(0, 3, (q, d)).astype(np.float64), rng.integers(0, 3, (g, d)).astype(np.float64)
    else:
        qf, gf = rng.normal(size=(q, d)), rng.normal(size=(g, d))
    qg, qq, gg = _dist(qf, gf), _dist(qf, qf), _dist(gf, gf)
    got = re_ranking(torch.from_numpy(qg), torch.from_numpy(qq), torch.from_numpy(gg), k1, k2, lam)
    want = reference_re_ranking(qg, qq, gg, k1, k2, lam)
    assert got.shape == (q, g) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


def test_chunked_equals_unchunked_and_float64():
    rng = np.random.default_rng(0)
    qf, gf = rng.normal(size=(30, 4)), rng.normal(size=(40, 4))
    qg, qq, gg = (torch.from_numpy(_dist(a, b)) for a, b in ((qf, gf), (qf, qf), (gf, gf)))
    whole = re_ranking(qg, qq, gg, 6, 3, 0.3)
    tiny_chunks = re_ranking(qg, qq, gg, 6, 3, 0.3, chunk_elements=50)
    torch.testing.assert_close(whole, tiny_chunks)
    np.testing.assert_allclose(whole.numpy(), reference_re_ranking(qg.numpy(), qq.numpy(), gg.numpy(), 6, 3, 0.3),
                               rtol=1e-5, atol=1e-5)
    as64 = re_ranking(qg.double(), qq.double(), gg.double(), 6, 3, 0.3)
    assert as64.dtype == torch.float64
    torch.testing.assert_close(as64.float(), whole, rtol=1e-4, atol=1e-5)


def test_lambda_one_keeps_the_original_order_and_reranking_changes_it():
    rng = np.random.default_rng(1)
    qf, gf = rng.normal(size=(8, 3)), rng.normal(size=(12, 3))
    qg, qq, gg = (torch.from_numpy(_dist(a, b)) for a, b in ((qf, gf), (qf, qf), (gf, gf)))
    plain = re_ranking(qg, qq, gg, 5, 2, 1.0)
    assert torch.equal(plain.argsort(dim=1, stable=True), qg.argsort(dim=1, stable=True))
    reranked = re_ranking(qg, qq, gg, 5, 2, 0.0)
    assert not torch.equal(reranked.argsort(dim=1, stable=True), qg.argsort(dim=1, stable=True))


def test_bad_arguments_are_named():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"q_q_dist \(2, 2\) and g_g_dist \(3, 3\)"):
        re_ranking(x, torch.zeros(3, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="q_g_dist must be a 2-D floating"):
        re_ranking(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 2), torch.zeros(3, 3))
    with pytest.raises(UserError, match="k1 must be a positive int"):
        ReRanking(k1=0)
    with pytest.raises(UserError, match=r"lambda_value must be in \[0, 1\]"):
        ReRanking(lambda_value=1.5)
