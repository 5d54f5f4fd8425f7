"""A CSV manifest reader: NPU-ReID, and any dataset laid out as a table of images.

The CSV needs a header row naming at least these columns (any order, case-insensitive)::

    path,identity,camera,modality,split
    visible/0001/c1_01.jpg,1,1,visible,train
    thermal/0001/c5_01.png,1,5,thermal,train
    visible/0101/c2_03.jpg,101,2,visible,test

* ``path``: image path, relative to ``root`` (default: the CSV's folder) or absolute.
* ``identity``, ``camera``: non-negative integers.
* ``modality``: ``visible``/``thermal`` or ``0``/``1`` (also ``rgb``, ``ir``, ``infrared``...).
* ``split``: ``train``; ``query`` or ``gallery`` (explicit roles); ``test`` (the image is
  in both ``query`` and ``gallery``, the protocol picks the direction by modality);
  ``val`` (kept in ``meta["val"]``, never used for training).
* optional ``scene`` (e.g. ``indoor``/``outdoor``): fills ``meta["camera_scene"]``; it must
  be the same on every row of a camera. Other columns are ignored.
"""

from __future__ import annotations

import csv
import os
from typing import Collection, Mapping

from ..errors import MissingFileError, UserError
from .images import check_sample_files
from .records import (
    ReIDData,
    Sample,
    check_both_modalities,
    check_queries_have_gallery,
    parse_modality,
    relabel,
)

REQUIRED_COLUMNS = ("path", "identity", "camera", "modality", "split")
SPLITS = ("train", "query", "gallery", "test", "val")


def _int_field(value: str, column: str, where: str) -> int:
    text = value.strip()
    if not text.isdigit():
        raise UserError(f"{where}: {column} must be a non-negative integer, got {value!r}")
    return int(text)


def read_manifest(
    csv_path: str | os.PathLike,
    root: str | os.PathLike | None = None,
    *,
    cameras: Collection[int] | None = None,
    camera_scene: Mapping[int, str] | None = None,
    verify_images: bool | str = True,
    name: str | None = None,
) -> ReIDData:
    """Read a dataset described by a CSV manifest (format in the module docstring).

    Returns a :class:`ReIDData`: ``train`` with identities remapped to ``0..C-1`` by sorted
    original id (``meta["train_id_map"]``); ``query`` = ``query`` + ``test`` rows and
    ``gallery`` = ``gallery`` + ``test`` rows (file order, original identities), so use
    :func:`mag_mmt.data.query_gallery` to pick a direction. ``protocol`` is ``"npu"``
    (both directions x all/per-scene search x single/multi-shot). ``meta`` holds ``root``,
    ``csv``, ``train_id_map``, ``camera_modality``, ``camera_scene`` (from the ``scene``
    column and/or the ``camera_scene`` argument; ``{}`` when neither) and ``val`` (the
    ``val`` rows as samples with original identities).

    Args:
        csv_path: the manifest.
        root: folder relative paths are resolved against (default: the CSV's folder).
        cameras: the allowed camera numbers; any other is an error (default: any).
        camera_scene: camera -> scene map (e.g. NPU-ReID's indoor/outdoor cameras); when
            given, every camera in the manifest must be in it.
        verify_images: check every image (header + end of data, see
            :func:`~mag_mmt.data.images.check_image_file`); ``"decode"`` decodes every
            image; existence is always checked.
        name: ``ReIDData.name`` (default: the CSV file name without extension); a label
            only, the protocol does not depend on it.

    Raises:
        MissingFileError: the CSV or a listed image is missing (names the ``file:line``).
        UserError: no header or missing columns, a malformed row (``file:line``), an
            unknown modality/split/camera, a camera seen with two modalities or two scenes,
            an image listed twice (in any splits), a training identity without images of
            one modality, a query identity without a gallery image of the other modality,
            a truncated or corrupt image, or no rows at all.

    Example::

        data = read_manifest("npu_reid.csv")
        query, gallery = query_gallery(data, "visible")   # visible-to-thermal
    """
    csv_path = os.fspath(csv_path)
    if not os.path.isfile(csv_path):
        raise MissingFileError(f"manifest not found: {csv_path}")
    root = os.fspath(root) if root is not None else os.path.dirname(os.path.abspath(csv_path))
    allowed = set(cameras) if cameras is not None else None
    scenes: dict[int, str] = {int(k): str(v).strip().lower() for k, v in (camera_scene or {}).items()}
    scene_line: dict[int, str] = {}
    modality_of: dict[int, tuple[int, str]] = {}
    parts: dict[str, list[Sample]] = {split: [] for split in SPLITS}
    seen: dict[str, tuple[int, str]] = {}

    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise UserError(f"{csv_path}: empty manifest (a header row {','.join(REQUIRED_COLUMNS)} is required)")
        columns = [c.strip().lower() for c in header]
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise UserError(
                f"{csv_path}:1: the header must name the columns {', '.join(REQUIRED_COLUMNS)}; "
                f"missing {', '.join(missing)} (found {header!r})"
            )
        if len(set(columns)) != len(columns):
            raise UserError(f"{csv_path}:1: repeated column names in the header {header!r}")
        col = {c: columns.index(c) for c in columns}
        for row in reader:
            where = f"{csv_path}:{reader.line_num}"
            if not row or all(not v.strip() for v in row):
                continue
            if len(row) != len(columns):
                raise UserError(f"{where}: expected {len(columns)} fields, got {len(row)}: {row!r}")
            rel = row[col["path"]].strip()
            if not rel:
                raise UserError(f"{where}: empty path")
            identity = _int_field(row[col["identity"]], "identity", where)
            camera = _int_field(row[col["camera"]], "camera", where)
            try:
                modality = parse_modality(row[col["modality"]])
            except ValueError as exc:
                raise UserError(f"{where}: {exc}") from None
            split = row[col["split"]].strip().lower()
            if split not in SPLITS:
                raise UserError(f"{where}: unknown split {row[col['split']]!r}; use one of {', '.join(SPLITS)}")
            if allowed is not None and camera not in allowed:
                raise UserError(f"{where}: unknown camera {camera}; allowed cameras are {sorted(allowed)}")
            if camera_scene is not None and camera not in camera_scene:
                raise UserError(f"{where}: unknown camera {camera}: not in camera_scene {sorted(camera_scene)}")
            if camera in modality_of and modality_of[camera][0] != modality:
                raise UserError(
                    f"{where}: camera {camera} is {row[col['modality']].strip()!r} here but had the other "
                    f"modality at {modality_of[camera][1]}; a camera has one modality"
                )
            modality_of.setdefault(camera, (modality, where))
            scene = row[col["scene"]].strip().lower() if "scene" in col else ""
            if scene:
                if scenes.setdefault(camera, scene) != scene:
                    first = scene_line.get(camera, "the camera_scene argument")
                    raise UserError(
                        f"{where}: camera {camera} has scene {scene!r} but {scenes[camera]!r} at {first}"
                    )
                scene_line.setdefault(camera, where)
            path = os.path.normpath(rel if os.path.isabs(rel) else os.path.join(root, rel))
            if path in seen:
                line, first_split = seen[path]
                raise UserError(
                    f"{where}: {rel!r} is listed twice (also line {line}, split {first_split!r}); "
                    "an image is one sample: use split 'test' for an image that is both query and gallery"
                )
            seen[path] = (reader.line_num, split)
            if not os.path.isfile(path):
                raise MissingFileError(f"{where}: image file not found: {path}")
            parts[split].append(Sample(path, identity, camera, modality))

    every = [s for split in SPLITS for s in parts[split]]
    if not every:
        raise UserError(f"{csv_path}: the manifest has a header but no rows")
    check_both_modalities(parts["train"], f"manifest {csv_path}")
    check_queries_have_gallery(parts["query"] + parts["test"], parts["gallery"] + parts["test"], f"manifest {csv_path}")
    check_sample_files(every, verify_images)
    train, id_map = relabel(parts["train"])
    meta = {
        "root": root,
        "csv": csv_path,
        "train_id_map": id_map,
        "camera_modality": {cam: mod for cam, (mod, _) in sorted(modality_of.items())},
        "camera_scene": dict(sorted(scenes.items())),
        "val": parts["val"],
    }
    data_name = name if name is not None else os.path.splitext(os.path.basename(csv_path))[0]
    return ReIDData(
        data_name,
        train,
        parts["query"] + parts["test"],
        parts["gallery"] + parts["test"],
        loader=None,
        meta=meta,
        protocol="npu",
    )


__all__ = ["read_manifest", "REQUIRED_COLUMNS", "SPLITS"]
