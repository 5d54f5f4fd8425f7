"""Property tests of CrossModalityIdentitySampler and split_batch."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from mag_mmt.data import CrossModalityIdentitySampler, ImageDataset, Sample, split_batch


@st.composite
def problems(draw):
    """A shuffled dataset (labels, modalities) and sampler settings that fit it."""
    num_ids = draw(st.integers(1, 12))
    ids = draw(st.lists(st.integers(0, 10_000), min_size=num_ids, max_size=num_ids, unique=True))
    labels, mods = [], []
    for pid in ids:
        nv, nt = draw(st.integers(1, 6)), draw(st.integers(1, 6))
        labels += [pid] * (nv + nt)
        mods += [0] * nv + [1] * nt
    perm = draw(st.permutations(range(len(labels))))
    labels = [labels[i] for i in perm]
    mods = [mods[i] for i in perm]
    world = draw(st.integers(1, 3))
    p = draw(st.integers(1, 4))
    assume(p * world <= num_ids)
    k = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32))
    epoch = draw(st.integers(0, 50))
    num_batches = draw(st.one_of(st.none(), st.integers(1, 7)))
    unit = draw(st.sampled_from(["images", "identities"]))
    return labels, mods, p, k, world, seed, epoch, num_batches, unit


def epoch_batches(labels, mods, p, k, world, seed, epoch, num_batches, unit):
    """All ranks' batches of one epoch: list (rank) of lists (step) of index lists."""
    out = []
    for rank in range(world):
        sampler = CrossModalityIdentitySampler(
            labels, mods, p, k, seed=seed, rank=rank, world_size=world, num_batches=num_batches, epoch_unit=unit
        )
        sampler.set_epoch(epoch)
        out.append(list(sampler))
    return out


def check_batch(batch, labels, mods, p, k):
    """The layout contract, checked the slow, obvious way. Returns the batch's identities."""
    assert len(batch) == 2 * p * k
    assert all(isinstance(i, int) and 0 <= i < len(labels) for i in batch)
    vis, th = batch[: p * k], batch[p * k :]
    assert all(mods[i] == 0 for i in vis) and all(mods[i] == 1 for i in th)
    for i in range(p * k):
        assert labels[vis[i]] == labels[th[i]]  # visible i and thermal i: same identity
    blocks = [[labels[i] for i in vis[j * k : (j + 1) * k]] for j in range(p)]
    assert all(len(set(b)) == 1 for b in blocks)  # identity-major: K in a row
    identities = [b[0] for b in blocks]
    assert len(set(identities)) == p  # P distinct identities
    for half in (vis, th):
        for j in range(p):
            block = half[j * k : (j + 1) * k]
            pool = [i for i in range(len(labels)) if labels[i] == identities[j] and mods[i] == mods[block[0]]]
            counts = Counter(block)
            if len(pool) >= k:
                assert len(counts) == k  # without replacement
            else:  # every image used, as evenly as possible
                assert set(counts) == set(pool)
                assert max(counts.values()) - min(counts.values()) <= 1
    return identities


@given(problems())
def test_composition_alignment_shards_and_length(problem):
    labels, mods, p, k, world, seed, epoch, num_batches, unit = problem
    per_rank = epoch_batches(*problem)
    num_ids = len(set(labels))
    per_modality = max(mods.count(0), mods.count(1))
    if num_batches is not None:
        expected_len = num_batches
    elif unit == "images":  # one pass over the larger modality's images, shared by the ranks
        expected_len = math.ceil(per_modality / (p * k * world))
    else:
        expected_len = math.ceil(num_ids / (p * world))
    assert all(len(batches) == expected_len for batches in per_rank)  # equal lengths
    seen = Counter()
    for step in range(expected_len):
        step_ids = []
        for rank in range(world):
            step_ids += check_batch(per_rank[rank][step], labels, mods, p, k)
        assert len(set(step_ids)) == len(step_ids)  # ranks disjoint within a step
        seen.update(step_ids)
    total = expected_len * p * world
    if num_batches is None and unit == "identities":  # an epoch shows every identity once or twice
        assert set(seen) == set(labels)
        assert max(seen.values()) <= 2
    else:  # identities dealt evenly: counts differ by at most one pass
        assert max(seen.values()) <= math.ceil(total / num_ids) + 1
        if total >= num_ids:
            assert set(seen) == set(labels)
    if num_batches is None and unit == "images":  # the epoch covers the larger modality's images
        assert expected_len * p * k * world >= per_modality > (expected_len - 1) * p * k * world


@given(problems())
def test_deterministic_given_seed_and_epoch(problem):
    assert epoch_batches(*problem) == epoch_batches(*problem)
    labels, mods, p, k, world, seed, epoch, nb, unit = problem
    sampler = CrossModalityIdentitySampler(labels, mods, p, k, seed=seed, world_size=world, num_batches=nb,
                                           epoch_unit=unit)
    sampler.set_epoch(epoch)
    assert list(sampler) == list(sampler)  # iterating twice repeats the epoch


def make_dataset(num_ids=40, nv=9, nt=5):
    samples = []
    for pid in range(num_ids):
        samples += [Sample(f"v{pid}_{i}", pid * 3, 1 + i % 2, 0) for i in range(nv)]
        samples += [Sample(f"t{pid}_{i}", pid * 3, 3, 1) for i in range(nt)]
    return samples


def test_epochs_and_seeds_differ():
    samples = make_dataset()
    sampler = CrossModalityIdentitySampler(samples, num_identities=4, num_instances=4, seed=1)
    epochs = []
    for e in range(6):
        sampler.set_epoch(e)
        epochs.append(list(sampler))
    assert all(epochs[i] != epochs[j] for i in range(6) for j in range(i))
    other = CrossModalityIdentitySampler(samples, num_identities=4, num_instances=4, seed=2)
    assert list(other) != epochs[0]
    # identity order within the epoch changes too, not only the images
    first_ids = [tuple(samples[b[0]].identity for b in batches) for batches in epochs]
    assert len(set(first_ids)) == 6


def test_epoch_length_in_images_and_in_identities():
    """AGW's epoch (default): one pass over the larger modality, shared by the ranks; the switch
    gives the per-identity epoch. 40 identities x (9 visible, 5 thermal)."""
    samples = make_dataset(num_ids=40, nv=9, nt=5)
    for p, k, world in [(4, 4, 1), (8, 4, 1), (4, 4, 2), (3, 2, 3)]:
        per_rank = [CrossModalityIdentitySampler(samples, num_identities=p, num_instances=k, rank=r,
                                                 world_size=world) for r in range(world)]
        assert all(len(s) == math.ceil(40 * 9 / (p * k * world)) for s in per_rank)
        assert all(len(list(s)) == len(s) for s in per_rank)
        old = CrossModalityIdentitySampler(samples, num_identities=p, num_instances=k, world_size=world,
                                           epoch_unit="identities")
        assert len(old) == math.ceil(40 / (p * world))
    thermal_heavy = make_dataset(num_ids=10, nv=2, nt=7)  # the larger modality may be thermal
    assert len(CrossModalityIdentitySampler(thermal_heavy, num_identities=2, num_instances=2)) == math.ceil(70 / 4)
    with pytest.raises(ValueError, match="epoch_unit"):
        CrossModalityIdentitySampler(samples, num_identities=2, epoch_unit="steps")


def test_accepts_samples_dataset_and_tensors_alike():
    samples = make_dataset(num_ids=6)
    labels = torch.tensor([s.identity for s in samples])
    mods = np.array([s.modality for s in samples])
    a = list(CrossModalityIdentitySampler(samples, num_identities=2, num_instances=3, seed=5))
    b = list(CrossModalityIdentitySampler(ImageDataset(samples), num_identities=2, num_instances=3, seed=5))
    c = list(CrossModalityIdentitySampler(labels, mods, num_identities=2, num_instances=3, seed=5))
    assert a == b == c
    assert CrossModalityIdentitySampler(samples, num_identities=2, num_instances=3).batch_size == 12


def test_bad_input():
    samples = make_dataset(num_ids=3)
    with pytest.raises(ValueError, match="identity 7 .no thermal"):
        CrossModalityIdentitySampler([0, 0, 7, 7, 7], [0, 1, 0, 0, 0], num_identities=1, num_instances=1)
    with pytest.raises(ValueError, match="at least num_identities \\* world_size = 4"):
        CrossModalityIdentitySampler(samples, num_identities=2, world_size=2)
    with pytest.raises(ValueError, match="rank"):
        CrossModalityIdentitySampler(samples, num_identities=1, rank=2, world_size=2)
    with pytest.raises(ValueError, match="num_instances"):
        CrossModalityIdentitySampler(samples, num_identities=1, num_instances=0)
    with pytest.raises(ValueError, match="modalities must be 0"):
        CrossModalityIdentitySampler([0, 0], [0, 2], num_identities=1)
    with pytest.raises(ValueError, match="same length"):
        CrossModalityIdentitySampler([0, 0, 1], [0, 1], num_identities=1)
    with pytest.raises(ValueError, match="integers"):
        CrossModalityIdentitySampler([0.0, 0.0], [0, 1], num_identities=1)
    with pytest.raises(ValueError, match="Sample"):
        CrossModalityIdentitySampler([0, 0, 1, 1], num_identities=1)
    with pytest.raises(ValueError, match="epoch"):
        CrossModalityIdentitySampler(samples, num_identities=1).set_epoch(-1)


def test_dataloader_batches_split_into_aligned_halves():
    samples = make_dataset(num_ids=5)
    values = {s.path: i for i, s in enumerate(samples)}

    def loader(sample):  # pixel value encodes the sample, to check the order end to end
        return torch.full((1, 4, 2), values[sample.path], dtype=torch.uint8)

    ds = ImageDataset(samples, loader=loader)
    sampler = CrossModalityIdentitySampler(samples, num_identities=2, num_instances=3, seed=3)
    batches = list(sampler)
    for indices, (images, labels, modalities, cameras) in zip(batches, DataLoader(ds, batch_sampler=sampler)):
        assert images.shape == (12, 3, 4, 2)
        torch.testing.assert_close(images[:, 0, 0, 0] * 255, torch.tensor(indices, dtype=torch.float32))
        visible, thermal, label_v, label_t = split_batch(images, labels, modalities)
        assert visible.shape == thermal.shape == (6, 3, 4, 2)
        assert torch.equal(label_v, label_t)
        assert torch.equal(visible, images[:6]) and torch.equal(thermal, images[6:])


def test_split_batch_validation():
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="first half"):
        split_batch(x, torch.tensor([1, 2, 1, 2]), torch.tensor([0, 1, 1, 1]))
    with pytest.raises(ValueError, match="share an identity"):
        split_batch(x, torch.tensor([1, 2, 2, 1]), torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="even"):
        split_batch(x[:3], torch.tensor([1, 2, 1]), torch.tensor([0, 0, 1]))
    v, t, lv, lt = split_batch(x, torch.tensor([1, 2, 2, 1]), torch.tensor([0, 0, 1, 1]), validate=False)
    assert lv.tolist() == [1, 2] and lt.tolist() == [2, 1]
