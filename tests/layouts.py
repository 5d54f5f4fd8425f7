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


# --------------------------------------------------------------------------- common mistakes
#
# Each mistake writes a dataset with one thing wrong under ``tmp`` and returns the command
# line that meets it, plus the fragments the error message must contain (the file, line,
# identity or argument). tests/test_bad_input.py checks the exception (a UserError, raised
# before training); tests/test_cli_errors.py checks how ``mag-mmt`` prints it.


def _train(data: str, root: Path, tmp: Path, *extra: str) -> list[str]:
    return ["train", "--data", data, "--root", str(root), *TINY_TRAIN, "--steps-per-epoch", "1",
            "--epochs", "1", "--out", str(tmp / "out"), *extra]


def _rewrite(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (old, path)
    path.write_text(text.replace(old, new, 1))


def _line_of(path: Path, fragment: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), start=1) if fragment in line)


def truncated_jpeg(tmp: Path):
    root = write_sysu(tmp / "sysu")
    bad = truncate_after_header(root / "cam2" / "0003" / "0001.jpg")
    return _train("sysu", root, tmp), [str(bad), "truncated"]


def empty_identity_folder(tmp: Path):
    root = write_sysu(tmp / "sysu")
    folder = root / "cam4" / "0002"
    for f in folder.iterdir():
        f.unlink()
    return _train("sysu", root, tmp), [str(folder), "holds no image"]


def identity_without_thermal(tmp: Path):
    root = write_sysu(tmp / "sysu")
    for cam in (3, 6):
        for f in (root / f"cam{cam}" / "0003").iterdir():
            f.unlink()
        (root / f"cam{cam}" / "0003").rmdir()
    return _train("sysu", root, tmp), ["identity 3 (no thermal image)"]


def idx_line_missing_image(tmp: Path):
    root = write_regdb(tmp / "regdb")
    listing = root / "idx" / "train_thermal_1.txt"
    _rewrite(listing, "Thermal/2/male_thermal_1.bmp", "Thermal/2/male_thermal_9.bmp")
    line = _line_of(listing, "male_thermal_9.bmp")
    return _train("regdb", root, tmp), [f"{listing}:{line}", "male_thermal_9.bmp", "not found"]


def float_label_in_idx(tmp: Path):
    root = write_regdb(tmp / "regdb")
    listing = root / "idx" / "test_visible_1.txt"
    _rewrite(listing, "Visible/11/female_visible_0.bmp 11", "Visible/11/female_visible_0.bmp 11.0")
    line = _line_of(listing, " 11.0")
    return _train("regdb", root, tmp), [f"{listing}:{line}", "integer label", "11.0"]


def _manifest_with(tmp: Path, edit) -> Path:
    """The clean manifest's images, and its CSV with the rows ``edit`` returns."""
    csv = write_manifest(tmp / "npu")
    rows = edit(manifest_rows())
    csv.write_text("path,identity,camera,modality,split,scene\n" + "\n".join(",".join(r) for r in rows) + "\n")
    return csv


def unknown_modality_word(tmp: Path):
    def edit(rows):
        rows[5][3] = "nightvision"
        return rows

    csv = _manifest_with(tmp, edit)
    return _train("manifest", csv, tmp), [f"{csv}:7", "unknown modality 'nightvision'"]


def duplicate_manifest_path(tmp: Path):
    def edit(rows):
        twin = list(rows[2])  # a train image listed again as a test image
        twin[4] = "test"
        return rows + [twin]

    csv = _manifest_with(tmp, edit)
    lines = len(csv.read_text().splitlines())
    return _train("manifest", csv, tmp), [f"{csv}:{lines}", "listed twice", "also line 4"]


def float_identity_in_manifest(tmp: Path):
    def edit(rows):
        rows[0][1] = "1.5"
        return rows

    csv = _manifest_with(tmp, edit)
    return _train("manifest", csv, tmp), [f"{csv}:2", "identity must be a non-negative integer", "1.5"]


def identity_without_gallery(tmp: Path):
    def edit(rows):  # identity 22 keeps its visible test images only
        return [r for r in rows if not (r[1] == "22" and r[3] == "thermal")]

    csv = _manifest_with(tmp, edit)
    return _train("manifest", csv, tmp), ["test identity 22 has visible query images but no thermal gallery image"]


def missing_root(tmp: Path):
    return _train("sysu", tmp / "no-such-folder", tmp), ["--root", str(tmp / "no-such-folder")]


def too_many_identities_per_batch(tmp: Path):
    root = write_regdb(tmp / "regdb")
    return _train("regdb", root, tmp, "-P", "9"), ["num_identities (-P)", "got 4"]


def image_size_zero(tmp: Path):
    root = write_regdb(tmp / "regdb")
    return _train("regdb", root, tmp, "--img-size", "0,0"), ["--img-size", "(0, 0)"]


def truncated_checkpoint(tmp: Path):
    root = write_regdb(tmp / "regdb")
    ckpt = tmp / "out" / "last.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"PK\x03\x04" + bytes(200))  # the start of a zip archive, cut short
    return _train("regdb", root, tmp, "--resume"), [str(ckpt)]


#: the mistakes, by name: (setup(tmp) -> (argv, fragments))
MISTAKES = {
    f.__name__: f
    for f in (
        truncated_jpeg, empty_identity_folder, identity_without_thermal, idx_line_missing_image,
        float_label_in_idx, unknown_modality_word, duplicate_manifest_path, float_identity_in_manifest,
        identity_without_gallery, missing_root, too_many_identities_per_batch, image_size_zero,
        truncated_checkpoint,
    )
}
