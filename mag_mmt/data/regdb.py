"""RegDB with the ``idx/`` split files of AGW's release.

::

    root/
      idx/train_visible_{trial}.txt    lines "relative/path label", trial = 1..10
      idx/train_thermal_{trial}.txt
      idx/test_visible_{trial}.txt
      idx/test_thermal_{trial}.txt
      Visible/... Thermal/...          the images, paths relative to root

RegDB has one visible and one thermal camera, captured side by side. This reader numbers
them camera 1 (visible) and camera 2 (thermal); RegDB's protocol ignores cameras.
"""

from __future__ import annotations

import os

from ..errors import MissingFileError, UserError
from .images import check_sample_files
from .records import (
    THERMAL,
    VISIBLE,
    ReIDData,
    Sample,
    check_both_modalities,
    check_queries_have_gallery,
    relabel,
)

REGDB_CAMERA = {VISIBLE: 1, THERMAL: 2}


def read_list_file(path: str, root: str, modality: int) -> list[Sample]:
    """Samples of one RegDB list file: each non-blank line ``relative/path label``.

    The label is the last blank-separated field (an integer), so paths may contain spaces.
    Raises ``MissingFileError`` when the list or an image it names is missing and
    ``UserError`` for a malformed line, both naming ``file:line``.
    """
    if not os.path.isfile(path):
        raise MissingFileError(f"RegDB split file not found: {path}")
    samples: list[Sample] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            text = line.strip()
            if not text:
                continue
            parts = text.rsplit(None, 1)
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise UserError(
                    f"{path}:{lineno}: expected 'relative/path label' with an integer label, got {text!r}"
                )
            rel, label = parts
            image = os.path.join(root, rel)
            if not os.path.isfile(image):
                raise MissingFileError(f"{path}:{lineno}: image file not found: {image}")
            samples.append(Sample(image, int(label), REGDB_CAMERA[modality], modality))
    if not samples:
        raise UserError(f"{path}: the list holds no image")
    return samples


def read_regdb(root: str | os.PathLike, trial: int = 1, verify_images: bool | str = True) -> ReIDData:
    """Read one RegDB trial (split) from ``root/idx``.

    Returns a :class:`ReIDData` with

    * ``train``: the visible then the thermal training images of the trial, identities
      remapped to ``0..C-1`` by sorted original label (``meta["train_id_map"]``);
    * ``query`` **and** ``gallery``: the same list, every test image of both modalities
      (visible first, then thermal; labels as in the files). The protocol picks the
      direction with :func:`mag_mmt.data.query_gallery`: ``"visible"`` gives AGW's default
      visible-to-thermal search, ``"thermal"`` the thermal-to-visible one; the whole other
      modality is the gallery.

    Cameras: 1 visible, 2 thermal. ``protocol``: ``"regdb"``. ``meta``: ``root``,
    ``trial``, ``train_id_map``, ``camera_modality``.

    Args:
        root: the RegDB folder (holding ``idx/`` and the image folders).
        trial: the split number, 1..10 in the release.
        verify_images: check every image (header + end of data, see
            :func:`~mag_mmt.data.images.check_image_file`); ``"decode"`` decodes every
            image; existence is always checked.

    Raises:
        MissingFileError: a list file or a listed image is missing (names the list's
            ``file:line``).
        UserError: a malformed line (``file:line``), a training identity without images
            of one modality, a test identity without images of one modality (its queries
            could never be matched), a truncated or corrupt image, or a bad ``trial``.

    Example::

        data = read_regdb("/data/RegDB", trial=3)
        query, gallery = query_gallery(data, "visible")  # visible-to-thermal
    """
    if isinstance(trial, bool) or not isinstance(trial, int) or trial < 1:
        raise UserError(f"trial must be a positive integer (RegDB has trials 1..10), got {trial!r}")
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise MissingFileError(f"RegDB root folder not found: {root}")
    idx = os.path.join(root, "idx")

    def lists(split: str) -> list[Sample]:
        return [
            s
            for name, modality in (("visible", VISIBLE), ("thermal", THERMAL))
            for s in read_list_file(os.path.join(idx, f"{split}_{name}_{trial}.txt"), root, modality)
        ]

    train = lists("train")
    test = lists("test")
    check_both_modalities(train, f"RegDB trial {trial} ({idx}/train_*_{trial}.txt)")
    check_queries_have_gallery(test, test, f"RegDB trial {trial} ({idx}/test_*_{trial}.txt)")
    check_sample_files(train + test, verify_images)
    train, id_map = relabel(train)
    meta = {
        "root": root,
        "trial": trial,
        "train_id_map": id_map,
        "camera_modality": {cam: mod for mod, cam in REGDB_CAMERA.items()},
    }
    return ReIDData(f"regdb-{trial}", train, list(test), list(test), loader=None, meta=meta, protocol="regdb")


__all__ = ["read_regdb", "read_list_file", "REGDB_CAMERA"]
