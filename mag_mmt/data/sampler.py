"""The cross-modality identity sampler (P identities x (K visible + K thermal) per batch).

Batch layout (the AGW/CAJ convention that the adapters and ``ModalityAugment`` rely on)::

    [ v(id_1) x K, v(id_2) x K, ..., v(id_P) x K,   t(id_1) x K, ..., t(id_P) x K ]

so position ``i`` of the visible half and position ``i`` of the thermal half always hold
the same identity (``N = 2PK``, visible rows first; docs/method.md#task-and-batch-convention).
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from .._validation import check_same_length, check_tensor, check_values
from ..errors import UserError
from .records import THERMAL, VISIBLE, Sample

#: what one epoch of :class:`CrossModalityIdentitySampler` covers (see its docstring)
EPOCH_UNITS = ("images", "identities")


def _as_int_array(values: object, name: str) -> np.ndarray:
    array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if array.ndim != 1:
        raise UserError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise UserError(f"{name} must hold integers, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def _identity_schedule(rng: np.random.Generator, num_ids: int, group: int, steps: int) -> np.ndarray:
    """``(steps, group)`` identity indices: each row distinct, identities used evenly.

    Identities are dealt from a random permutation; when fewer than ``group`` remain, the
    row is completed from a fresh permutation (without the ones already in the row), and
    the leftovers go to the end of the new pass, so over ``ceil(num_ids / group)`` steps
    every identity appears at least once and at most twice.
    """
    out = np.empty((steps, group), dtype=np.int64)
    perm = rng.permutation(num_ids)
    pos = 0
    for step in range(steps):
        if perm.size - pos >= group:
            out[step] = perm[pos : pos + group]
            pos += group
            continue
        rest = perm[pos:]
        fresh = rng.permutation(num_ids)
        fresh = fresh[~np.isin(fresh, rest)]
        need = group - rest.size
        out[step, : rest.size] = rest
        out[step, rest.size :] = fresh[:need]
        perm = np.concatenate([fresh[need:], rest])
        pos = 0
    return out


def _draw_instances(
    rng: np.random.Generator, schedule: np.ndarray, pools: list[np.ndarray], k: int
) -> np.ndarray:
    """``(steps, group, k)`` dataset indices: for each scheduled identity, ``k`` of its images.

    Without replacement when the identity has at least ``k`` images; otherwise all of them
    in random order, repeated as evenly as possible (each image ``floor``/``ceil(k/n)`` times).
    """
    flat = schedule.ravel()
    out = np.empty((flat.size, k), dtype=np.int64)
    order = np.argsort(flat, kind="stable")
    counts = np.bincount(flat, minlength=len(pools))
    start = 0
    for ident, count in enumerate(counts.tolist()):
        if count == 0:
            continue
        where = order[start : start + count]
        start += count
        pool = pools[ident]
        reps = -(-k // pool.size)
        perms = np.argsort(rng.random((count, reps, pool.size)), axis=2).reshape(count, reps * pool.size)
        out[where] = pool[perms[:, :k]]
    return out.reshape(*schedule.shape, k)


class CrossModalityIdentitySampler(Sampler[list[int]]):
    """Batch sampler: P identities, K visible + K thermal images of each, per batch.

    Use with ``DataLoader(dataset, batch_sampler=sampler)``; every batch is a list of
    ``2 * P * K`` dataset indices, the ``P*K`` visible ones first (identity-major:
    ``id_1`` K times, then ``id_2``...), then the ``P*K`` thermal ones in the same identity
    order, so visible ``i`` and thermal ``i`` share an identity.

    **Epoch.** Identities are dealt from a seeded permutation, ``P * world_size`` distinct
    ones per step (when the permutation runs out, the step is completed from the next one,
    so identities are used evenly). The epoch length in steps (batches per rank) is:

    - ``epoch_unit="images"`` (default; AGW's and CAJ's epoch): one pass over the larger
      modality's images, shared by the ranks:
      ``ceil(max(n_visible, n_thermal) / (P * K * world_size))``;
    - ``epoch_unit="identities"``: every identity once, ``ceil(C / (P * world_size))`` (each
      identity appears at least once and at most twice per epoch);
    - ``num_batches``, when given, overrides both.

    Within an identity, K images are drawn without replacement, or, when it has fewer than
    K, each image about ``K / n`` times.

    **Determinism and DDP.** Batches depend only on ``(seed, epoch)``: call
    ``set_epoch(e)`` before each epoch (as with ``DistributedSampler``) or every epoch
    repeats. With ``world_size`` ranks, every rank computes the same global step of
    ``P * world_size`` distinct identities and takes its own ``P``: in each step ranks see
    different identities, and all ranks have the same number of batches.

    Args:
        samples_or_labels: a sequence of :class:`Sample` (or a dataset with ``.samples``,
            e.g. :class:`ImageDataset`), or per-image identity labels when ``modalities``
            is given.
        modalities: per-image modality codes (0 visible, 1 thermal) with ``labels``.
        num_identities: P, identities per batch per rank.
        num_instances: K, images per identity and modality.
        seed: non-negative base seed. rank, world_size: this process's shard.
        num_batches: batches per epoch per rank (default: from ``epoch_unit``).
        epoch_unit: ``"images"`` (default) or ``"identities"``, see **Epoch**.

    Raises:
        UserError: bad sizes, an identity without images of one modality (named), or
            fewer than ``P * world_size`` identities.

    Example::

        >>> labels = [0, 0, 1, 1, 2, 2]; mods = [0, 1, 0, 1, 0, 1]
        >>> sampler = CrossModalityIdentitySampler(labels, mods, num_identities=2, num_instances=1)
        >>> len(sampler), len(next(iter(sampler)))  # 3 images per modality / (P*K = 2)
        (2, 4)
        >>> [len(CrossModalityIdentitySampler(labels, mods, num_identities=1, num_instances=2, epoch_unit=unit))
        ...  for unit in ("images", "identities")]
        [2, 3]
    """

    def __init__(
        self,
        samples_or_labels: Sequence[Sample] | Sequence[int] | torch.Tensor | np.ndarray,
        modalities: Sequence[int] | torch.Tensor | np.ndarray | None = None,
        num_identities: int = 8,
        num_instances: int = 4,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_batches: int | None = None,
        epoch_unit: str = "images",
    ) -> None:
        for name, value, low in (
            ("num_identities", num_identities, 1),
            ("num_instances", num_instances, 1),
            ("world_size", world_size, 1),
            ("seed", seed, 0),
            ("rank", rank, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise UserError(f"{name} must be an integer >= {low}, got {value!r}")
        if rank >= world_size:
            raise UserError(f"rank must be in [0, world_size={world_size}), got {rank}")
        if num_batches is not None and (isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 1):
            raise UserError(f"num_batches must be a positive integer or None, got {num_batches!r}")
        if epoch_unit not in EPOCH_UNITS:
            raise UserError(f"epoch_unit must be one of {', '.join(EPOCH_UNITS)}, got {epoch_unit!r}")

        if modalities is None:
            source = getattr(samples_or_labels, "samples", samples_or_labels)
            samples = list(source)  # type: ignore[arg-type]
            if not all(isinstance(s, Sample) for s in samples):
                raise UserError("pass a sequence of Sample, or labels together with modalities")
            labels = _as_int_array([s.identity for s in samples], "sample identities")
            mods = _as_int_array([s.modality for s in samples], "sample modalities")
        else:
            labels = _as_int_array(samples_or_labels, "labels")
            mods = _as_int_array(modalities, "modalities")
            if labels.size != mods.size:
                raise UserError(f"labels and modalities must have the same length, got {labels.size} and {mods.size}")
        bad = ~np.isin(mods, (VISIBLE, THERMAL))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise UserError(f"modalities must be 0 (visible) or 1 (thermal); index {i} holds {mods[i]}")

        identities, inverse = np.unique(labels, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        groups = np.split(order, np.cumsum(np.bincount(inverse, minlength=identities.size))[:-1])
        self._visible = [g[mods[g] == VISIBLE] for g in groups]
        self._thermal = [g[mods[g] == THERMAL] for g in groups]
        lacking = [
            f"identity {int(identities[i])} (no {'visible' if v.size == 0 else 'thermal'} image)"
            for i, (v, t) in enumerate(zip(self._visible, self._thermal))
            if v.size == 0 or t.size == 0
        ]
        if lacking:
            more = f" and {len(lacking) - 10} more" if len(lacking) > 10 else ""
            raise UserError(
                "every identity needs visible and thermal images: " + ", ".join(lacking[:10]) + more
            )
        group = int(num_identities) * int(world_size)
        if identities.size < group:
            raise UserError(
                f"need at least num_identities * world_size = {group} training identities "
                f"({num_identities} * {world_size}), got {identities.size}: lower num_identities (-P)"
            )
        self.identities = identities
        self.num_identities = int(num_identities)
        self.num_instances = int(num_instances)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.epoch_unit = epoch_unit
        if num_batches is None:
            if epoch_unit == "images":
                larger = max(int((mods == VISIBLE).sum()), int((mods == THERMAL).sum()))
                num_batches = math.ceil(larger / (group * int(num_instances)))
            else:
                num_batches = math.ceil(identities.size / group)
        self.num_batches = num_batches
        self.epoch = 0

    @property
    def batch_size(self) -> int:
        """Images per batch: ``2 * P * K``."""
        return 2 * self.num_identities * self.num_instances

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields (non-negative)."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise UserError(f"epoch must be a non-negative integer, got {epoch!r}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        p, k, steps = self.num_identities, self.num_instances, self.num_batches
        schedule = _identity_schedule(rng, self.identities.size, p * self.world_size, steps)
        mine = slice(self.rank * p, (self.rank + 1) * p)
        visible = _draw_instances(rng, schedule, self._visible, k)[:, mine].reshape(steps, p * k)
        thermal = _draw_instances(rng, schedule, self._thermal, k)[:, mine].reshape(steps, p * k)
        yield from np.concatenate([visible, thermal], axis=1).tolist()


def split_batch(
    images: torch.Tensor, labels: torch.Tensor, modalities: torch.Tensor, validate: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(visible, thermal, label_v, label_t)`` from a batch in the sampler's layout.

    The first half of the batch is visible and the second thermal, aligned by position.
    With ``validate`` (one host read) checks that layout: ``modalities`` is 0 then 1 and the
    halves' labels agree; pass ``validate=False`` on a hot path.

    Shapes: ``images`` (2B, ...), ``labels`` and ``modalities`` (2B,) -> (B, ...), (B, ...),
    (B,), (B,).

    Example::

        >>> x = torch.zeros(4, 3, 8, 4); y = torch.tensor([5, 6, 5, 6]); m = torch.tensor([0, 0, 1, 1])
        >>> v, t, yv, yt = split_batch(x, y, m)
        >>> v.shape[0], yt.tolist()
        (2, [5, 6])
    """
    check_tensor(images, "images")
    check_tensor(labels, "labels", 1)
    check_tensor(modalities, "modalities", 1)
    check_same_length("images", images, "labels", labels)
    check_same_length("labels", labels, "modalities", modalities)
    n = labels.shape[0]
    if n % 2:
        raise UserError(f"a cross-modality batch has an even size (visible half + thermal half), got {n}")
    h = n // 2
    if validate:
        check_values(
            [
                ((modalities[:h] == VISIBLE).all(), "split_batch: the first half of modalities must be 0 (visible)"),
                ((modalities[h:] == THERMAL).all(), "split_batch: the second half of modalities must be 1 (thermal)"),
                ((labels[:h] == labels[h:]).all(), "split_batch: visible i and thermal i must share an identity"),
            ]
        )
    return images[:h], images[h:], labels[:h], labels[h:]


__all__ = ["CrossModalityIdentitySampler", "split_batch"]
