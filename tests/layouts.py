"""Tiny datasets written to disk in the exact layouts users have, with real image files.

* :func:`write_sysu`: SYSU-MM01 (``cam1..cam6/<pid 4 digits>/*.jpg``,
  ``exp/{train,val,test}_id.txt`` with comma-separated ids);
* :func:`write_regdb`: RegDB (``Visible/<id>/*.bmp``, ``Thermal/<id>/*.bmp``,
  ``idx/{train,test}_{visible,thermal}_{trial}.txt`` with ``path label`` lines);
* :func:`write_manifest`: an NPU-ReID-style CSV (``path,identity,camera,modality,split,scene``)
  over 4 visible cameras (1, 2 indoor; 3, 4 outdoor) and 4 thermal ones (5, 6 indoor; 7, 8
  outdoor), PNG images.

Images are 8x16 (W x H) noise with a per-identity tint, so a small model can learn a little
in a few steps; thermal images are grayscale. Each writer returns the path to pass as
``--root``. :func:`truncate_after_header` cuts a JPEG just after its scan header (PIL still
opens it; decoding fails).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (8, 16)  # (W, H) as PIL wants it

SYSU_TRAIN_IDS = (1, 2, 3)
SYSU_VAL_IDS = (4,)
SYSU_TEST_IDS = (11, 12, 13)
REGDB_TRAIN_IDS = (0, 1, 2, 3)
REGDB_TEST_IDS = (10, 11, 12)
NPU_TRAIN_IDS = (1, 2, 3, 4)
NPU_TEST_IDS = (21, 22, 23)
NPU_CAMERAS = {  # camera -> (modality word, scene)
    1: ("visible", "indoor"), 2: ("visible", "indoor"), 3: ("visible", "outdoor"), 4: ("visible", "outdoor"),
    5: ("thermal", "indoor"), 6: ("thermal", "indoor"), 7: ("thermal", "outdoor"), 8: ("thermal", "outdoor"),
}
TINY_TRAIN = ["--model", "small-cnn", "--img-size", "16,8", "-P", "2", "-K", "2", "--no-progress",
              "--device", "cpu"]


def write_image(path: Path, identity: int, seed: int, thermal: bool) -> Path:
    """An 8x16 image of ``identity`` (tint) with seeded noise; the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([identity, seed])
    tint = np.array([(37 * identity) % 200, (91 * identity) % 200, (53 * identity) % 200], dtype=np.int64)
    pixels = np.clip(tint + rng.integers(0, 56, (SIZE[1], SIZE[0], 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, mode="RGB")
    (image.convert("L") if thermal else image).save(path)
    return path


def write_sysu(root: Path, images_per_folder: int = 2) -> Path:
    """SYSU-MM01: every identity under every camera (cameras 3, 6 thermal)."""
    for cam in range(1, 7):
        for pid in SYSU_TRAIN_IDS + SYSU_VAL_IDS + SYSU_TEST_IDS:
            for n in range(images_per_folder):
                write_image(root / f"cam{cam}" / f"{pid:04d}" / f"{n + 1:04d}.jpg", pid, cam * 10 + n, cam in (3, 6))
    exp = root / "exp"
    exp.mkdir(parents=True, exist_ok=True)
    for name, ids in (("train", SYSU_TRAIN_IDS), ("val", SYSU_VAL_IDS), ("test", SYSU_TEST_IDS)):
        (exp / f"{name}_id.txt").write_text(",".join(str(i) for i in ids) + "\n")
    return root


def write_regdb(root: Path, trial: int = 1, images_per_id: int = 2) -> Path:
    """RegDB trial ``trial``: ``Visible/<id>/*.bmp``, ``Thermal/<id>/*.bmp`` and the idx lists."""
    (root / "idx").mkdir(parents=True, exist_ok=True)
    for split, ids in (("train", REGDB_TRAIN_IDS), ("test", REGDB_TEST_IDS)):
        for name, folder in (("visible", "Visible"), ("thermal", "Thermal")):
            lines = []
            for pid in ids:
                for n in range(images_per_id):
                    rel = f"{folder}/{pid}/{'female' if pid % 2 else 'male'}_{folder.lower()}_{n}.bmp"
                    write_image(root / rel, pid, n + (100 if name == "thermal" else 0), name == "thermal")
                    lines.append(f"{rel} {pid}")
            (root / "idx" / f"{split}_{name}_{trial}.txt").write_text("\n".join(lines) + "\n")
    return root


def manifest_rows() -> list[list[str]]:
    """The rows of :func:`write_manifest`: every identity under every camera, once in the
    train split and twice in the test split (so single- and multi-shot galleries differ)."""
    rows = []
    for split, ids, count in (("train", NPU_TRAIN_IDS, 1), ("test", NPU_TEST_IDS, 2)):
        for pid in ids:
            for cam, (modality, scene) in NPU_CAMERAS.items():
                for n in range(count):
                    rows.append([f"{modality}/{pid:04d}/c{cam}_{n}.png", str(pid), str(cam), modality, split, scene])
    return rows


def write_manifest(root: Path, rows: list[list[str]] | None = None, name: str = "npu_reid.csv") -> Path:
    """An NPU-ReID-style manifest CSV under ``root`` and its PNG images; returns the CSV path."""
    rows = manifest_rows() if rows is None else rows
    for path, pid, cam, modality, *_ in rows:
        if not (root / path).exists():
            seed = zlib.crc32(path.encode())
            write_image(root / path, int(float(pid)) if pid.strip() else 0, seed, modality != "visible")
    csv = root / name
    csv.write_text("path,identity,camera,modality,split,scene\n" + "\n".join(",".join(r) for r in rows) + "\n")
    return csv


def truncate_after_header(path: Path, keep: int = 20) -> Path:
    """Cut the JPEG at ``path`` ``keep`` bytes after its start-of-scan marker: the header is
    intact (PIL opens it and reports its size) but the pixel data stops short."""
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"\xff\xda") + keep])
    return path
