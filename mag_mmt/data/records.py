"""The record types every reader produces and every protocol, sampler and CLI consumes.

A dataset is a list of :class:`Sample` records per split. Readers of real datasets
(SYSU-MM01, RegDB, manifest CSV) and the synthetic generator all return a
:class:`ReIDData`, so the sampler, the evaluation protocols and the CLI never need to know
where the images come from.

Conventions shared by every reader (see also ``ReIDData``):

* ``train`` identities are remapped to ``0..C-1`` in the order of the sorted original ids;
  the map is ``meta["train_id_map"]`` (original id -> label). Every train identity has at
  least one visible and one thermal image (readers raise ``UserError`` otherwise).
* ``query`` / ``gallery`` keep the dataset's own identity numbers.
* **Direction.** ``query`` holds every sample that may be a query and ``gallery`` every
  sample that may be a gallery image, *of either modality*. A protocol picks the direction
  with :func:`query_gallery` (query of one modality, gallery of the other). SYSU-MM01 has
  only thermal queries and visible gallery images (so only thermal-to-visible is
  available); RegDB and manifest ``test`` rows put every test image in both lists, so both
  directions are available.
* ``protocol`` names the evaluation protocol the dataset follows (``DATASET_PROTOCOLS``): each
  reader sets its own (``read_sysu``: ``"sysu"``, ``read_regdb``: ``"regdb"``,
  ``read_manifest``: ``"npu"``); the CLI and :func:`mag_mmt.training.run_protocol` choose
  the protocol from it, never from ``name``.
* ``meta`` keys readers fill in: ``"root"`` (str), ``"train_id_map"`` (dict),
  ``"camera_modality"`` (camera -> 0/1), and where known ``"camera_scene"``
  (camera -> ``"indoor"`` / ``"outdoor"``, used by indoor-/outdoor-search). Reader-specific
  keys are documented by each reader.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Callable, Collection, Iterable, Sequence

import torch

from ..errors import UserError
from ..modalities import MODALITY_NAMES, THERMAL, VISIBLE  # re-exported for the readers

#: evaluation protocols a dataset can follow (``ReIDData.protocol``):
#: ``"sysu"`` SYSU-MM01 (thermal queries, all/indoor x single/multi-shot gallery trials),
#: ``"regdb"`` RegDB (both directions, the whole other modality as gallery),
#: ``"npu"`` NPU-ReID style, for any manifest (both directions x all/per-scene x single/multi-shot)
DATASET_PROTOCOLS = ("sysu", "regdb", "npu")

#: spellings accepted by :func:`parse_modality` (lower-cased, stripped)
MODALITY_ALIASES = {
    "0": VISIBLE,
    "visible": VISIBLE,
    "vis": VISIBLE,
    "rgb": VISIBLE,
    "color": VISIBLE,
    "colour": VISIBLE,
    "1": THERMAL,
    "thermal": THERMAL,
    "infrared": THERMAL,
    "ir": THERMAL,
    "nir": THERMAL,
}


@dataclass(frozen=True)
class Sample:
    """One image.

    Attributes:
        path: image file path, or a key understood by the dataset's ``loader``
            (e.g. ``"synthetic://..."``).
        identity: person identity. In ``train`` splits readers remap identities to
            ``0..C-1`` (classifier targets); in ``query``/``gallery`` splits it is the
            dataset's own identity number, so results can be traced back to files.
        camera: the dataset's own camera number (SYSU-MM01: 1..6).
        modality: 0 = visible, 1 = thermal/infrared.
    """

    path: str
    identity: int
    camera: int
    modality: int


@dataclass
class ReIDData:
    """The splits of one dataset (or one trial of it).

    ``gallery`` is the gallery *pool*: protocols that sample a gallery per trial
    (SYSU-MM01 single-/multi-shot) draw from it. ``loader`` turns a sample into a
    ``uint8`` tensor ``(3, H, W)``; ``None`` means "read ``sample.path`` from disk".
    ``query`` and ``gallery`` may hold both modalities: use :func:`query_gallery` to get
    the pair for one search direction. ``protocol`` (one of ``DATASET_PROTOCOLS``) is the
    evaluation protocol of the dataset's kind, set by its reader; ``name`` is only a label
    (``"regdb-3"``, a CSV's file name). The default, ``"npu"``, evaluates any dataset
    with query and gallery images of both modalities.
    """

    name: str
    train: list[Sample]
    query: list[Sample]
    gallery: list[Sample]
    loader: Callable[[Sample], torch.Tensor] | None = None
    meta: dict = field(default_factory=dict)
    protocol: str = "npu"

    def __post_init__(self) -> None:
        if self.protocol not in DATASET_PROTOCOLS:
            raise UserError(f"ReIDData.protocol must be one of {', '.join(DATASET_PROTOCOLS)}, got {self.protocol!r}")

    @property
    def num_train_identities(self) -> int:
        return len({s.identity for s in self.train})


def as_arrays(samples: Sequence[Sample]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(identities, cameras, modalities)`` of ``samples`` as int64 tensors."""
    ids = torch.tensor([s.identity for s in samples], dtype=torch.long)
    cams = torch.tensor([s.camera for s in samples], dtype=torch.long)
    mods = torch.tensor([s.modality for s in samples], dtype=torch.long)
    return ids, cams, mods


def parse_modality(value: object) -> int:
    """``0`` (visible) or ``1`` (thermal) from ``0``/``1`` or a name in ``MODALITY_ALIASES``.

    >>> parse_modality("Thermal"), parse_modality(0), parse_modality("rgb")
    (1, 0, 0)
    """
    key = str(value).strip().lower()
    if key not in MODALITY_ALIASES:
        raise UserError(
            f"unknown modality {value!r}; use 0/1 or one of {sorted(MODALITY_ALIASES)}"
        )
    return MODALITY_ALIASES[key]


def select(
    samples: Iterable[Sample],
    *,
    modality: int | None = None,
    cameras: Collection[int] | None = None,
) -> list[Sample]:
    """The samples of one modality and/or from some cameras, in their original order."""
    out = list(samples)
    if modality is not None:
        out = [s for s in out if s.modality == modality]
    if cameras is not None:
        keep = set(cameras)
        out = [s for s in out if s.camera in keep]
    return out


def query_gallery(data: ReIDData, query_modality: int | str) -> tuple[list[Sample], list[Sample]]:
    """``(query, gallery)`` for one search direction.

    ``query`` = the samples of ``data.query`` of ``query_modality``; ``gallery`` = the
    samples of ``data.gallery`` of the other modality. Visible-to-thermal is
    ``query_gallery(data, "visible")``.

    Raises:
        UserError: when the dataset offers no query or no gallery image for that
            direction (e.g. visible queries on SYSU-MM01).

    Example::

        >>> d = ReIDData("toy", [], [Sample("a", 0, 1, 0), Sample("b", 0, 2, 1)],
        ...              [Sample("a", 0, 1, 0), Sample("b", 0, 2, 1)])
        >>> q, g = query_gallery(d, "thermal")
        >>> [s.path for s in q], [s.path for s in g]
        (['b'], ['a'])
    """
    qm = parse_modality(query_modality)
    query = select(data.query, modality=qm)
    gallery = select(data.gallery, modality=1 - qm)
    direction = f"{MODALITY_NAMES[qm]}-to-{MODALITY_NAMES[1 - qm]}"
    if not query:
        raise UserError(f"{data.name}: no {MODALITY_NAMES[qm]} query images, so no {direction} search")
    if not gallery:
        raise UserError(
            f"{data.name}: no {MODALITY_NAMES[1 - qm]} gallery images, so no {direction} search"
        )
    return query, gallery


def relabel(samples: Sequence[Sample]) -> tuple[list[Sample], dict[int, int]]:
    """Remap identities to ``0..C-1`` in the order of the sorted original ids.

    Returns the relabelled samples (same order) and the map original id -> label.
    """
    id_map = {pid: label for label, pid in enumerate(sorted({s.identity for s in samples}))}
    return [replace(s, identity=id_map[s.identity]) for s in samples], id_map


def check_both_modalities(samples: Iterable[Sample], source: str) -> None:
    """Raise :class:`UserError` naming every identity that lacks a visible or a thermal image."""
    seen: dict[int, set[int]] = defaultdict(set)
    for s in samples:
        seen[s.identity].add(s.modality)
    missing = {
        pid: MODALITY_NAMES[1 - next(iter(mods))] for pid, mods in seen.items() if len(mods) < 2
    }
    if missing:
        listing = ", ".join(f"identity {pid} (no {m} image)" for pid, m in sorted(missing.items())[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise UserError(
            f"{source}: every training identity needs visible and thermal images: {listing}{more}"
        )


def check_queries_have_gallery(query: Iterable[Sample], gallery: Iterable[Sample], source: str) -> None:
    """Every query identity must have a gallery image of the other modality.

    A query whose identity has no gallery image in the other modality can never be matched:
    evaluation code like AGW's silently leaves it out, which hides a broken test split.
    Raises :class:`UserError` naming the identities (and the modality they lack).

    >>> check_queries_have_gallery([Sample("q", 3, 3, 1)], [Sample("g", 3, 1, 0)], "toy")
    >>> check_queries_have_gallery([Sample("q", 3, 3, 1)], [Sample("g", 4, 1, 0)], "toy")
    Traceback (most recent call last):
    ...
    mag_mmt.errors.UserError: toy: test identity 3 has thermal query images but no visible gallery image
    """
    have: set[tuple[int, int]] = {(s.identity, s.modality) for s in gallery}
    lacking = sorted({(s.identity, s.modality) for s in query if (s.identity, 1 - s.modality) not in have})
    if lacking:
        listing = ", ".join(
            f"test identity {pid} has {MODALITY_NAMES[m]} query images but no {MODALITY_NAMES[1 - m]} gallery image"
            for pid, m in lacking[:10]
        )
        more = f" (and {len(lacking) - 10} more)" if len(lacking) > 10 else ""
        raise UserError(f"{source}: {listing}{more}")


__all__ = [
    "VISIBLE",
    "THERMAL",
    "MODALITY_NAMES",
    "MODALITY_ALIASES",
    "DATASET_PROTOCOLS",
    "Sample",
    "ReIDData",
    "as_arrays",
    "parse_modality",
    "select",
    "query_gallery",
    "relabel",
    "check_both_modalities",
    "check_queries_have_gallery",
]
