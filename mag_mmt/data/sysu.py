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

from .images import IMAGE_EXTENSIONS, check_sample_files
from .records import THERMAL, VISIBLE, ReIDData, Sample, check_both_modalities, relabel

SYSU_VISIBLE_CAMERAS = (1, 2, 4, 5)
SYSU_THERMAL_CAMERAS = (3, 6)
SYSU_CAMERA_MODALITY = {1: VISIBLE, 2: VISIBLE, 3: THERMAL, 4: VISIBLE, 5: VISIBLE, 6: THERMAL}
SYSU_CAMERA_SCENE = {1: "indoor", 2: "indoor", 3: "indoor", 4: "outdoor", 5: "outdoor", 6: "outdoor"}


def read_id_file(path: str) -> list[int]:
    """Identity numbers of a SYSU ``exp/*_id.txt`` file (separated by commas and/or blanks).

    Raises ``FileNotFoundError`` when missing, ``ValueError`` naming the file and the
    offending token when it holds anything but integers, or nothing.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SYSU-MM01 split file not found: {path}")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    ids: list[int] = []
    for token in re.split(r"[,\s]+", text.strip()):
        if not token:
            continue
        if not token.isdigit():
            raise ValueError(f"{path}: expected comma-separated identity numbers, found {token!r}")
        ids.append(int(token))
    if not ids:
        raise ValueError(f"{path}: no identity numbers in the file")
    return sorted(set(ids))


def _check_cameras(root: str) -> None:
    for cam in SYSU_CAMERA_MODALITY:
        folder = os.path.join(root, f"cam{cam}")
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"SYSU-MM01 camera folder not found: {folder}")
    for name in sorted(os.listdir(root)):
        match = re.fullmatch(r"cam(\d+)", name)
        if match and int(match.group(1)) not in SYSU_CAMERA_MODALITY:
            raise ValueError(
                f"unknown camera folder {os.path.join(root, name)}: SYSU-MM01 has cameras 1..6"
            )


def _images_of(root: str, pid: int, cameras: tuple[int, ...]) -> list[Sample]:
    """Samples of identity ``pid`` under ``cameras``, camera by camera, files sorted by name."""
    out: list[Sample] = []
    for cam in cameras:
        folder = os.path.join(root, f"cam{cam}", f"{pid:04d}")
        if not os.path.isdir(folder):
            continue
        names = sorted(
            n for n in os.listdir(folder)
            if not n.startswith(".") and n.lower().endswith(IMAGE_EXTENSIONS)
        )
        out.extend(Sample(os.path.join(folder, n), pid, cam, SYSU_CAMERA_MODALITY[cam]) for n in names)
    return out


def read_sysu(root: str | os.PathLike, verify_images: bool = True) -> ReIDData:
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
        verify_images: open every image header with PIL (catches unreadable files early,
            not truncated pixel data; roughly 0.1-0.5 ms per file, ~30x cheaper than
            decoding). Existence is always checked.

    Raises:
        FileNotFoundError: a camera folder or split file is missing.
        ValueError: an unknown camera folder (``cam7``), a malformed split file, an identity
            in both train and test, a listed identity without images, a training identity
            without images of one modality, or a corrupt image; the message names it.

    Example::

        data = read_sysu("/data/SYSU-MM01")
        print(data.num_train_identities, len(data.query), len(data.gallery))  # 395 3803 ...
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"SYSU-MM01 root folder not found: {root}")
    _check_cameras(root)
    exp = os.path.join(root, "exp")
    train_ids = read_id_file(os.path.join(exp, "train_id.txt"))
    val_ids = read_id_file(os.path.join(exp, "val_id.txt"))
    test_ids = read_id_file(os.path.join(exp, "test_id.txt"))
    fit_ids = sorted(set(train_ids) | set(val_ids))
    overlap = sorted(set(fit_ids) & set(test_ids))
    if overlap:
        raise ValueError(f"{exp}: identities {overlap[:10]} are in both the train/val and the test split")

    all_cameras = tuple(sorted(SYSU_CAMERA_MODALITY))
    train: list[Sample] = []
    for pid in fit_ids:
        images = _images_of(root, pid, all_cameras)
        if not images:
            raise ValueError(f"SYSU-MM01 training identity {pid:04d} has no image under {root}/cam1..cam6")
        train.extend(images)
    check_both_modalities(train, f"SYSU-MM01 ({root})")

    query: list[Sample] = []
    gallery: list[Sample] = []
    for pid in test_ids:
        q = _images_of(root, pid, SYSU_THERMAL_CAMERAS)
        g = _images_of(root, pid, SYSU_VISIBLE_CAMERAS)
        if not q and not g:
            raise ValueError(f"SYSU-MM01 test identity {pid:04d} has no image under {root}/cam1..cam6")
        query.extend(q)
        gallery.extend(g)

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
    return ReIDData("sysu", train, query, gallery, loader=None, meta=meta)


__all__ = [
    "read_sysu",
    "read_id_file",
    "SYSU_VISIBLE_CAMERAS",
    "SYSU_THERMAL_CAMERAS",
    "SYSU_CAMERA_MODALITY",
    "SYSU_CAMERA_SCENE",
]
