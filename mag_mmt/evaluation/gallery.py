"""Gallery sampling: which pool images form the gallery of trial ``t``.

A gallery holds ``shot`` images per (identity, camera) of the pool: ``"single"`` (1),
``"multi"`` (10) or a count. Trial ``t`` draws with ``numpy.random.default_rng([seed, t])``,
so it gets the same gallery on every machine, whatever other trials run. Groups are visited
in ascending (identity, camera) order and images inside a group keep their order in the
pool: the draw depends on the pool's order only within a group (the readers sort by file
name).

``sampling="agw"`` (SYSU-MM01, single-shot) draws instead exactly the galleries of AGW's
``test.py`` (``process_gallery_sysu``: ``random.seed(t)``, one ``random.choice`` per
identity and camera folder); see :func:`sample_gallery`.
"""

from __future__ import annotations

import os
import random
from typing import Iterable, Literal, Sequence

import numpy as np

from mag_mmt.data.records import Sample
from mag_mmt.errors import UserError

__all__ = ["sample_gallery", "GALLERY_SAMPLINGS", "SHOTS"]

#: gallery images per (identity, camera) for the named shots
SHOTS: dict[str, int] = {"single": 1, "multi": 10}
#: gallery draws: ours (numpy, seeded per trial) and AGW's ``process_gallery_sysu``
GALLERY_SAMPLINGS: tuple[str, ...] = ("default", "agw")

Shot = Literal["single", "multi"] | int
GallerySampling = Literal["default", "agw"]


def num_shots(shot: Shot) -> int:
    """Images per (identity, camera) for ``shot``; a :class:`~mag_mmt.errors.UserError` if invalid."""
    if isinstance(shot, str):
        if shot not in SHOTS:
            raise UserError(f"shot must be 'single', 'multi' or a positive int, got {shot!r}")
        return SHOTS[shot]
    if isinstance(shot, bool) or not isinstance(shot, int) or shot < 1:
        raise UserError(f"shot must be 'single', 'multi' or a positive int, got {shot!r}")
    return shot


def shot_name(shot: Shot) -> str:
    """``"single-shot"``, ``"multi-shot"`` or ``"3-shot"``: the name used in result names."""
    return f"{shot}-shot"


def check_sampling(sampling: str, shot: Shot, seed: int) -> None:
    """Reject an unknown ``sampling``, and ``"agw"`` with a multi-shot gallery or ``seed != 0``."""
    if sampling not in GALLERY_SAMPLINGS:
        raise UserError(f"gallery_sampling must be one of {GALLERY_SAMPLINGS}, got {sampling!r}")
    if sampling == "agw" and num_shots(shot) != 1:
        raise UserError(
            f"gallery_sampling='agw' reproduces AGW's single-shot SYSU-MM01 galleries; AGW has no "
            f"multi-shot gallery, got shot={shot!r}"
        )
    if sampling == "agw" and seed != 0:
        raise UserError(f"gallery_sampling='agw' seeds trial t with random.seed(t) as AGW does; seed must be 0, got {seed}")


def sample_gallery(
    samples: Sequence[Sample],
    shot: Shot = "single",
    *,
    cameras: Iterable[int] | None = None,
    trial: int = 0,
    seed: int = 0,
    sampling: GallerySampling = "default",
) -> np.ndarray:
    """Indices into ``samples`` of one random gallery: ``shot`` images per (identity, camera).

    Args:
        samples: the gallery pool.
        shot: ``"single"`` (1), ``"multi"`` (10) or a count; a group with fewer images
            contributes all of them.
        cameras: keep only these cameras (``None``: all).
        trial, seed: the draw uses ``numpy.random.default_rng([seed, trial])``.
        sampling: ``"default"`` (the draw above) or ``"agw"``: AGW's ``process_gallery_sysu``
            (``data_manager.py``) for trial ``t``, i.e. ``random.seed(t)`` then one
            ``random.choice`` over the files of each (identity, camera) group, sorted by file
            name, groups in the order of AGW's loops (identity as a 4-digit string, then
            camera). Single-shot only (AGW has no multi-shot gallery: other shots raise
            :class:`~mag_mmt.errors.UserError`) and ``seed`` must be 0. Given the pool of the
            released SYSU-MM01 folders (only image files in them, as the reader reads) and a
            mode's cameras, it picks the images AGW's ``test.py`` picks, trial for trial.

    Returns:
        ``int64`` indices, ascending.

    Example:
        >>> from mag_mmt.data.records import Sample
        >>> pool = [Sample(f"{i}", i // 4, 1 + i % 2, 0) for i in range(8)]
        >>> sample_gallery(pool, "single", trial=0).tolist() == sample_gallery(pool, "single", trial=0).tolist()
        True
        >>> len(sample_gallery(pool, "single")), len(sample_gallery(pool, "multi"))
        (4, 8)
    """
    count = num_shots(shot)
    if isinstance(trial, bool) or not isinstance(trial, int) or trial < 0:
        raise UserError(f"trial must be a non-negative int, got {trial!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"seed must be a non-negative int, got {seed!r}")
    check_sampling(sampling, shot, seed)
    allowed = None if cameras is None else set(int(c) for c in cameras)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, s in enumerate(samples):
        if allowed is None or s.camera in allowed:
            groups.setdefault((s.identity, s.camera), []).append(i)
    if sampling == "agw":
        draw = random.Random(trial)  # AGW: random.seed(trial) before its loops
        picks = [
            draw.choice(sorted(groups[key], key=lambda i: os.path.basename(samples[i].path)))
            for key in sorted(groups, key=lambda k: (f"{k[0]:04d}", k[1]))
        ]
        return np.array(sorted(picks), dtype=np.int64)
    rng = np.random.default_rng([seed, trial])
    chosen: list[int] = []
    for key in sorted(groups):
        members = groups[key]
        if count >= len(members):
            chosen.extend(members)
        else:
            picks = rng.choice(len(members), size=count, replace=False)
            chosen.extend(members[j] for j in picks)
    return np.array(sorted(chosen), dtype=np.int64)

