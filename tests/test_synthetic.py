"""Embedded synthetic cross-modality data: determinism, layout, modality properties."""

from __future__ import annotations

import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mag_mmt.data.records import THERMAL, VISIBLE, ReIDData, query_gallery
from mag_mmt.data.synthetic import (
    SYNTHETIC_PRESETS,
    SyntheticRenderer,
    make_synthetic,
    parse_synthetic_key,
    synthetic_key,
)

SMALL = dict(num_identities=12, num_train_identities=6, images_per_camera=2, size=(32, 16))


@pytest.fixture(scope="module")
def demo() -> ReIDData:
    return make_synthetic("demo")


def test_layout_and_meta():
    data = make_synthetic(**SMALL)
    assert data.name == "synthetic" and callable(data.loader)
    assert len(data.train) == 6 * 6 * 2 and data.num_train_identities == 6
    assert {s.identity for s in data.train} == set(range(6))
    assert data.meta["train_id_map"] == {i: i for i in range(6)}
    test_ids = {s.identity for s in data.query} | {s.identity for s in data.gallery}
    assert test_ids == set(range(6, 12)) == set(data.meta["test_ids"])
    assert not test_ids & {s.identity for s in data.train}
    # SYSU layout: thermal queries from cameras 3, 6; visible gallery from 1, 2, 4, 5
    assert {(s.camera, s.modality) for s in data.query} == {(3, THERMAL), (6, THERMAL)}
    assert {(s.camera, s.modality) for s in data.gallery} == {(c, VISIBLE) for c in (1, 2, 4, 5)}
    assert data.meta["camera_modality"] == {1: 0, 2: 0, 3: 1, 4: 0, 5: 0, 6: 1}
    assert data.meta["camera_scene"][1] == "indoor" and data.meta["camera_scene"][6] == "outdoor"
    for s in data.train + data.query + data.gallery:
        pid, cam, k = parse_synthetic_key(s.path)
        assert cam == s.camera and 0 <= k < 2
        assert s.modality == data.meta["camera_modality"][cam]
    train_pids = {parse_synthetic_key(s.path)[0] for s in data.train}
    assert train_pids == set(range(6))
    paths = [s.path for s in data.train + data.query + data.gallery]
    assert len(paths) == len(set(paths)) == 12 * 6 * 2


def test_both_directions_layout():
    data = make_synthetic(**SMALL, both_directions=True)
    for qm in ("visible", "thermal"):
        q, g = query_gallery(data, qm)
        assert len(q) == 6 * (2 if qm == "thermal" else 4) * 2
        assert len(g) == 6 * (4 if qm == "thermal" else 2) * 2


def test_images_shape_dtype_and_determinism():
    a = make_synthetic(**SMALL, seed=3)
    b = make_synthetic(**SMALL, seed=3, cache=False)
    c = make_synthetic(**SMALL, seed=4)
    s = a.query[0]
    img = a.loader(s)
    assert img.dtype == torch.uint8 and img.shape == (3, 32, 16)
    paths = [x.path for x in a.train[::7] + a.query + a.gallery[::3]]
    ra, rb = a.loader.render_paths(paths), b.loader.render_paths(paths)
    assert torch.equal(ra, rb)  # cached and uncached, same seed: same pixels
    assert torch.equal(a.loader(s), b.loader(s.path))
    assert not torch.equal(ra, c.loader.render_paths(paths))  # another seed differs
    # the renderer survives pickling (DataLoader workers) and renders the same
    clone = pickle.loads(pickle.dumps(a.loader))
    assert torch.equal(clone.render_paths(paths), ra)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 11), st.sampled_from([1, 2, 3, 4, 5, 6]), st.integers(0, 1)),
                min_size=1, max_size=6))
def test_batch_rendering_matches_one_by_one(keys):
    """An image's pixels do not depend on the batch it is rendered in."""
    renderer = SyntheticRenderer(12, 2, (32, 16), seed=1, cache=False)
    batch = renderer.render_paths([synthetic_key(*k) for k in keys])
    for row, key in zip(batch, keys):
        assert torch.equal(row, renderer(synthetic_key(*key)))


def test_thermal_has_equal_channels_and_visible_has_colour(demo):
    loader = demo.loader
    thermal = loader.render_paths([s.path for s in demo.query[:64]]).float()
    visible = loader.render_paths([s.path for s in demo.gallery[:64]]).float()
    assert torch.equal(thermal[:, 0], thermal[:, 1]) and torch.equal(thermal[:, 1], thermal[:, 2])
    spread = (visible.max(1).values - visible.min(1).values).mean()
    assert spread > 20  # visible images are far from grey (uint8 units)


def test_distinct_identities_differ_and_same_identity_is_closer(demo):
    """Same camera, same index: two identities differ clearly; and an identity's two images
    under one camera are each other's nearest neighbours (pixel L1) far above chance."""
    r = demo.loader
    imgs = r._all().float()  # (ids, cams, k, 3, H, W)
    n = imgs.shape[0]
    diff = (imgs[:-1, :, 0] - imgs[1:, :, 0]).abs().mean(dim=(2, 3, 4))  # (n-1, cams)
    assert diff.min() > 3.0
    for cam in (0, 2):  # a visible and a thermal camera
        x = imgs[:, cam].flatten(2)  # (ids, k, pixels)
        within = (x[:, 0] - x[:, 1]).abs().mean(-1)
        across = (x[:, 0].unsqueeze(1) - x[:, 1].unsqueeze(0)).abs().mean(-1)
        across = across + torch.diag(torch.full((n,), float("inf")))
        rank1 = (within < across.min(1).values).float().mean()
        assert rank1 > 6.0 / n  # pose jitter and noise make it far from trivial, yet well above chance


def _colour_hist(x: torch.Tensor, bins: int = 8) -> torch.Tensor:
    """Joint RGB histogram of the central region (the person), L1-normalised."""
    h, w = x.shape[-2:]
    x = x[..., h // 5 : 4 * h // 5, w // 4 : 3 * w // 4].long()
    q = x * bins // 256
    idx = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
    flat = idx.flatten(1)
    hist = torch.zeros(x.shape[0], bins**3).scatter_add_(1, flat, torch.ones(flat.shape))
    return hist / hist.sum(1, keepdim=True)


def _hist_rank1(data: ReIDData, query, gallery) -> float:
    hq = _colour_hist(data.loader.render_paths([s.path for s in query]))
    hg = _colour_hist(data.loader.render_paths([s.path for s in gallery]))
    dist = torch.cdist(hq.sqrt(), hg.sqrt())  # Hellinger
    iq = torch.tensor([s.identity for s in query])
    ig = torch.tensor([s.identity for s in gallery])
    return float((ig[dist.argmin(1)] == iq).float().mean())


def test_colour_matches_within_visible_but_not_across_modalities(demo):
    chance = 1.0 / len(demo.meta["test_ids"])
    within = _hist_rank1(demo, [s for s in demo.gallery if s.camera == 1],
                         [s for s in demo.gallery if s.camera != 1])
    across = _hist_rank1(demo, demo.query, demo.gallery)
    assert within > 0.3, within
    assert across < 3 * chance, across
    assert within > 5 * across


def test_thermal_carries_identity(demo):
    """Thermal images of one identity match across the two thermal cameras far above
    chance with a plain pixel distance (shape and heat are consistent)."""
    data = demo
    q = [s for s in data.query if s.camera == 3]
    g = [s for s in data.query if s.camera == 6]
    xq = data.loader.render_paths([s.path for s in q]).float().flatten(1)
    xg = data.loader.render_paths([s.path for s in g]).float().flatten(1)
    iq = torch.tensor([s.identity for s in q])
    ig = torch.tensor([s.identity for s in g])
    rank1 = float((ig[torch.cdist(xq, xg).argmin(1)] == iq).float().mean())
    assert rank1 > 3.0 / len(data.meta["test_ids"])


def test_presets_and_bad_arguments():
    assert set(SYNTHETIC_PRESETS) == {"demo", "large", "bench", "bench-large"}
    large = make_synthetic("large")
    assert not large.loader.cache and large.meta["size"] == (256, 128)
    assert large.num_train_identities == 395 and len(large.meta["test_ids"]) == 96
    assert large.loader(large.query[-1]).shape == (3, 256, 128)
    # num_identities alone: half train
    assert make_synthetic(num_identities=10).num_train_identities == 5
    with pytest.raises(ValueError, match="unknown synthetic preset 'huge'"):
        make_synthetic("huge")
    with pytest.raises(ValueError, match="num_train_identities"):
        make_synthetic(num_identities=4, num_train_identities=4)
    with pytest.raises(ValueError, match="size"):
        make_synthetic(size=(4, 4))
    with pytest.raises(ValueError, match="size"):
        make_synthetic(size=64)
    with pytest.raises(ValueError, match="not a synthetic image key"):
        parse_synthetic_key("/data/cam1/0001/0001.jpg")
    data = make_synthetic(**SMALL)
    with pytest.raises(ValueError, match="identity out of range"):
        data.loader(synthetic_key(12, 1, 0))
    with pytest.raises(ValueError, match="index out of range"):
        data.loader(synthetic_key(0, 1, 2))
    with pytest.raises(ValueError, match="cameras are"):
        data.loader(synthetic_key(0, 7, 0))


BENCH_SMALL = dict(num_identities=8, num_train_identities=4, images_per_camera=2)


def test_bench_presets_layout_and_shapes():
    bench = make_synthetic("bench")
    assert bench.meta["style"] == "bench" and bench.meta["size"] == (64, 32)
    assert bench.num_train_identities == 300 and len(bench.meta["test_ids"]) == 64
    assert bench.loader.cache  # 364 x 6 x 4 images of 64 x 32: cached
    big = make_synthetic("bench-large")
    assert big.meta["style"] == "bench" and not big.loader.cache
    assert big.num_train_identities == 400 and len(big.meta["test_ids"]) == 96
    assert big.loader(big.query[-1]).shape == (3, 128, 64)
    assert make_synthetic("demo").meta["style"] == "classic"
    with pytest.raises(ValueError, match="unknown synthetic style 'fancy'"):
        make_synthetic("demo", style="fancy")


def test_bench_images_deterministic_and_distinct_from_classic():
    a = make_synthetic("bench", **BENCH_SMALL, seed=5)
    b = make_synthetic("bench", **BENCH_SMALL, seed=5, cache=False)
    paths = [s.path for s in a.train[::5] + a.query + a.gallery[::3]]
    ra = a.loader.render_paths(paths)
    assert ra.dtype == torch.uint8 and ra.shape == (len(paths), 3, 64, 32)
    assert torch.equal(ra, b.loader.render_paths(paths))  # same seed, same pixels (cached or not)
    assert not torch.equal(ra, make_synthetic("bench", **BENCH_SMALL, seed=6).loader.render_paths(paths))
    classic = make_synthetic("demo", **BENCH_SMALL, seed=5).loader.render_paths(paths)
    assert (ra.float() - classic.float()).abs().mean() > 5  # another generator, not the demo's
    thermal = a.loader.render_paths([s.path for s in a.query]).float()
    assert torch.equal(thermal[:, 0], thermal[:, 1]) and torch.equal(thermal[:, 1], thermal[:, 2])
    # the classic style draws none of the bench parameters (its pixels stay as they were)
    assert "hat" not in make_synthetic("demo", **BENCH_SMALL).loader._id
    assert not any(name.startswith("id.") or name == "occluder" for name in make_synthetic("demo", **BENCH_SMALL).loader._img)


def test_bench_identities_are_attribute_combinations_with_per_image_colours():
    from mag_mmt.data.synthetic import BENCH_ATTRIBUTES

    r = make_synthetic("bench", num_identities=200, num_train_identities=100, images_per_camera=2).loader
    attrs = r._id["attributes"]
    assert attrs.shape == (200, len(BENCH_ATTRIBUTES))
    for j, k in enumerate(BENCH_ATTRIBUTES.values()):  # every value of every attribute is drawn
        assert set(attrs[:, j].tolist()) == set(range(k))
    # the same attribute value gives the same geometry class: build -> shoulder width bands do not overlap
    build = attrs[:, 0]
    slim, wide = r._id["shoulder"][build == 0], r._id["shoulder"][build == 2]
    assert slim.max() < r._id["shoulder"][build == 1].min() and r._id["shoulder"][build == 1].max() < wide.min()
    # garment colours are drawn per image: one identity's upper colour changes between its images
    upper = r._img["id.upper"]  # (ids, cameras, k, 3)
    changes = (upper[:, :, 0] - upper[:, :, 1]).abs().sum(-1) > 0.2
    assert 0.2 < float(changes.float().mean()) < 0.9
    # heat: the identity's offset is small against the material's level
    assert float(r._id["heat_skin"].std()) < 0.05 and float((r._id["heat_skin"] - r._id["heat_upper"]).mean()) > 0.3


def _mean_colour_rank1(data: ReIDData, query, gallery) -> float:
    def desc(samples):
        x = data.loader.render_paths([s.path for s in samples]).float()
        h, w = x.shape[-2:]
        return x[..., h // 8 : 15 * h // 16, w // 4 : 3 * w // 4].mean(dim=(2, 3))

    iq = torch.tensor([s.identity for s in query])
    ig = torch.tensor([s.identity for s in gallery])
    return float((ig[torch.cdist(desc(query), desc(gallery)).argmin(1)] == iq).float().mean())


@pytest.mark.slow
def test_bench_colour_alone_does_not_match_across_modalities():
    """64 test identities: colour histograms and mean colours do not find the person from a
    thermal query (below 3x chance), while the same matcher within the visible modality does
    better once colours are the owner's (``colour_keep`` = 1: every image in its owner's colours)."""
    from mag_mmt.data import synthetic

    data = make_synthetic("bench", num_identities=96, num_train_identities=32, images_per_camera=2)
    chance = 1.0 / len(data.meta["test_ids"])
    for rank1 in (_hist_rank1(data, data.query, data.gallery), _mean_colour_rank1(data, data.query, data.gallery)):
        assert rank1 < 3 * chance, rank1
    cam1 = [s for s in data.gallery if s.camera == 1]
    others = [s for s in data.gallery if s.camera != 1]
    weak = _hist_rank1(data, cam1, others)  # colours mostly redrawn per image: a weak cue
    keep = synthetic.BENCH_STYLE["colour_keep"]
    try:
        synthetic.BENCH_STYLE["colour_keep"] = 1.0
        owned = make_synthetic("bench", num_identities=96, num_train_identities=32, images_per_camera=2)
        strong = _hist_rank1(owned, cam1, others)
    finally:
        synthetic.BENCH_STYLE["colour_keep"] = keep
    assert strong > 4 * chance and strong > weak + chance, (strong, weak)
