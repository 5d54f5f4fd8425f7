"""SYSU-MM01 in its released layout.

::

    root/
      cam1/ .. cam6/          one folder per camera
        0001/ 0002/ ...       one folder per identity (4 digits), images inside
      exp/train_id.txt        comma-separated identity numbers
      exp/val_id.txt
      exp/test_id.txt

Cameras 1, 2, 4, 5 are visible, 3 and 6 thermal; 1, 2, 3 are indoor, 4, 5, 6 outdoor.
As in AGW, the training set is the train *and* val identities together.
"""

from __future__ import annotations

import os
import re

from ..errors import MissingFileError, UserError
from .images import IMAGE_EXTENSIONS, check_sample_files
from .records import (
    THERMAL,
    VISIBLE,
    ReIDData,
    Sample,
    check_both_modalities,
    check_queries_have_gallery,
    relabel,
)

SYSU_VISIBLE_CAMERAS = (1, 2, 4, 5)
SYSU_THERMAL_CAMERAS = (3, 6)
SYSU_CAMERA_MODALITY = {1: VISIBLE, 2: VISIBLE, 3: THERMAL, 4: VISIBLE, 5: VISIBLE, 6: THERMAL}
SYSU_CAMERA_SCENE = {1: "indoor", 2: "indoor", 3: "indoor", 4: "outdoor", 5: "outdoor", 6: "outdoor"}


def read_id_file(path: str) -> list[int]:
    """Identity numbers of a SYSU ``exp/*_id.txt`` file (separated by commas and/or blanks).

    Raises ``MissingFileError`` when missing, ``UserError`` naming the file and the
    offending token when it holds anything but integers, or nothing.
    """
    if not os.path.isfile(path):
        raise MissingFileError(f"SYSU-MM01 split file not found: {path}")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    ids: list[int] = []
    for token in re.split(r"[,\s]+", text.strip()):
        if not token:
            continue
        if not token.isdigit():
            raise UserError(f"{path}: expected comma-separated identity numbers, found {token!r}")
        ids.append(int(token))
    if not ids:
        raise UserError(f"{path}: no identity numbers in the file")
    return sorted(set(ids))


def _check_cameras(root: str) -> None:
    for cam in SYSU_CAMERA_MODALITY:
        folder = os.path.join(root, f"cam{cam}")
        if not os.path.isdir(folder):
            raise MissingFileError(f"SYSU-MM01 camera folder not found: {folder}")
    for name in sorted(os.listdir(root)):
        match = re.fullmatch(r"cam(\d+)", name)
        if match and int(match.group(1)) not in SYSU_CAMERA_MODALITY:
            raise UserError(
                f"unknown camera folder {os.path.join(root, name)}: SYSU-MM01 has cameras 1..6"
            )


def _images_of(root: str, pid: int, cameras: tuple[int, ...]) -> list[Sample]:
    """Samples of identity ``pid`` under ``cameras``, camera by camera, files sorted by name.

    An identity folder without any image file is an error (a failed copy looks like this):
    a folder that exists says the identity was filmed by that camera.
    """
    out: list[Sample] = []
    for cam in cameras:
        folder = os.path.join(root, f"cam{cam}", f"{pid:04d}")
        if not os.path.isdir(folder):
            continue
        names = sorted(
            n for n in os.listdir(folder)
            if not n.startswith(".") and n.lower().endswith(IMAGE_EXTENSIONS)
        )
        if not names:
            raise UserError(
                f"SYSU-MM01 identity folder {folder} holds no image (extensions {', '.join(IMAGE_EXTENSIONS)}); "
                "restore its images or remove the empty folder"
            )
        out.extend(Sample(os.path.join(folder, n), pid, cam, SYSU_CAMERA_MODALITY[cam]) for n in names)
    return out


def read_sysu(root: str | os.PathLike, verify_images: bool | str = True) -> ReIDData:
    """Read SYSU-MM01 from its released folder layout.

    Returns a :class:`ReIDData` with

    * ``train``: every image of the train + val identities, all six cameras, identities
      remapped to ``0..C-1`` by sorted original id (``meta["train_id_map"]``);
    * ``query``: every thermal image (cameras 3, 6) of the test identities;
    * ``gallery``: the gallery *pool*, every visible image (cameras 1, 2, 4, 5) of the test
      identities. Single-/multi-shot protocols sample from it per trial.

    Order (which AGW's seeded gallery sampling depends on): identity ascending, then camera
    ascending, then file name ascending. Only files with an image extension
    (``IMAGE_EXTENSIONS``, case-insensitive) are read; hidden files are skipped.
    ``meta`` holds ``root``, ``train_id_map``, ``camera_modality``, ``camera_scene``
    (cameras 1-3 indoor, 4-6 outdoor) and ``train_ids`` / ``val_ids`` / ``test_ids``.

    Args:
        root: the folder holding ``cam1`` .. ``cam6`` and ``exp``.
        verify_images: check every image with
            :func:`~mag_mmt.data.images.check_image_file` (header + end-of-data test, so a
            file cut short is caught before training); ``"decode"`` decodes every image;
            ``False`` checks existence only.

    Raises:
        MissingFileError: a camera folder or split file is missing.
        UserError: an unknown camera folder (``cam7``), a malformed split file, an identity
            in both train and test, a listed identity without images, an empty identity
            folder, a training identity without images of one modality, a test identity
            with thermal query images but no visible gallery image, or a truncated or
            corrupt image; the message names it.

    Example::

        data = read_sysu("/data/SYSU-MM01")
        print(data.num_train_identities, len(data.query), len(data.gallery))  # 395 3803 ...
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise MissingFileError(f"SYSU-MM01 root folder not found: {root}")
    _check_cameras(root)
    exp = os.path.join(root, "exp")
    train_ids = read_id_file(os.path.join(exp, "train_id.txt"))
    val_ids = read_id_file(os.path.join(exp, "val_id.txt"))
    test_ids = read_id_file(os.path.join(exp, "test_id.txt"))
    fit_ids = sorted(set(train_ids) | set(val_ids))
    overlap = sorted(set(fit_ids) & set(test_ids))
    if overlap:
        raise UserError(f"{exp}: identities {overlap[:10]} are in both the train/val and the test split")

    all_cameras = tuple(sorted(SYSU_CAMERA_MODALITY))
    train: list[Sample] = []
    for pid in fit_ids:
        images = _images_of(root, pid, all_cameras)
        if not images:
            raise UserError(f"SYSU-MM01 training identity {pid:04d} has no image under {root}/cam1..cam6")
        train.extend(images)
    check_both_modalities(train, f"SYSU-MM01 ({root})")

    query: list[Sample] = []
    gallery: list[Sample] = []
    for pid in test_ids:
        q = _images_of(root, pid, SYSU_THERMAL_CAMERAS)
        g = _images_of(root, pid, SYSU_VISIBLE_CAMERAS)
        if not q and not g:
            raise UserError(f"SYSU-MM01 test identity {pid:04d} has no image under {root}/cam1..cam6")
        query.extend(q)
        gallery.extend(g)
    check_queries_have_gallery(query, gallery, f"SYSU-MM01 ({root})")

    check_sample_files(train + query + gallery, verify_images)
    train, id_map = relabel(train)
    meta = {
        "root": root,
        "train_id_map": id_map,
        "camera_modality": dict(SYSU_CAMERA_MODALITY),
        "camera_scene": dict(SYSU_CAMERA_SCENE),
        "train_ids": train_ids,
        "val_ids": val_ids,
        "test_ids": test_ids,
    }
    return ReIDData("sysu", train, query, gallery, loader=None, meta=meta, protocol="sysu")


__all__ = [
    "read_sysu",
    "read_id_file",
    "SYSU_VISIBLE_CAMERAS",
    "SYSU_THERMAL_CAMERAS",
    "SYSU_CAMERA_MODALITY",
    "SYSU_CAMERA_SCENE",
]
