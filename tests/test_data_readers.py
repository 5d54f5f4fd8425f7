"""Dataset readers and ImageDataset on small fake trees of real image files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mag_mmt.data import (
    ImageDataset,
    ReIDData,
    Sample,
    check_both_modalities,
    parse_modality,
    query_gallery,
    read_image,
    read_manifest,
    read_regdb,
    read_sysu,
    relabel,
    select,
)


def write_image(path: Path, mode: str = "RGB", size: tuple[int, int] = (6, 10), value: int = 0) -> Path:
    """A tiny real image; ``size`` is (W, H) as PIL wants it; the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(path)
    return path


# --------------------------------------------------------------------------- SYSU-MM01

SYSU_TRAIN = [1, 3, 7]
SYSU_VAL = [9]
SYSU_TEST = [2, 5]


def make_sysu(root: Path, images_per_cam: int = 2, skip: tuple = ()) -> Path:
    """cam1..cam6/<pid>/<n>.jpg for every listed id (except (cam, pid) pairs in ``skip``)."""
    for cam in range(1, 7):
        (root / f"cam{cam}").mkdir(parents=True, exist_ok=True)
        for pid in SYSU_TRAIN + SYSU_VAL + SYSU_TEST:
            if (cam, pid) in skip:
                continue
            for n in range(images_per_cam):
                mode = "L" if cam in (3, 6) else "RGB"
                write_image(root / f"cam{cam}" / f"{pid:04d}" / f"{n + 1:04d}.jpg", mode, value=cam * 100 + pid)
    exp = root / "exp"
    exp.mkdir(exist_ok=True)
    (exp / "train_id.txt").write_text(",".join(map(str, SYSU_TRAIN)) + "\n")
    (exp / "val_id.txt").write_text(",".join(map(str, SYSU_VAL)))
    (exp / "test_id.txt").write_text(",".join(map(str, SYSU_TEST)) + "\n")
    return root


def test_sysu_splits_labels_and_order(tmp_path):
    root = make_sysu(tmp_path / "sysu")
    data = read_sysu(root)
    assert isinstance(data, ReIDData) and data.loader is None
    # train = train + val identities, 6 cameras x 2 images each, remapped by sorted id
    assert len(data.train) == 4 * 6 * 2
    assert data.meta["train_id_map"] == {1: 0, 3: 1, 7: 2, 9: 3}
    assert sorted({s.identity for s in data.train}) == [0, 1, 2, 3]
    assert data.num_train_identities == 4
    for s in data.train:
        assert s.modality == (1 if s.camera in (3, 6) else 0)
        original = int(Path(s.path).parent.name)
        assert data.meta["train_id_map"][original] == s.identity
        assert Path(s.path).parent.parent.name == f"cam{s.camera}"
    # query: thermal test images; gallery pool: visible test images, original ids
    assert {(s.camera, s.modality) for s in data.query} == {(3, 1), (6, 1)}
    assert {(s.camera, s.modality) for s in data.gallery} == {(1, 0), (2, 0), (4, 0), (5, 0)}
    assert len(data.query) == 2 * 2 * 2 and len(data.gallery) == 2 * 4 * 2
    assert {s.identity for s in data.query} == {s.identity for s in data.gallery} == set(SYSU_TEST)
    # order: identity, camera, file name
    keys = [(s.identity, s.camera, os.path.basename(s.path)) for s in data.gallery]
    assert keys == sorted(keys)
    assert data.meta["camera_scene"] == {1: "indoor", 2: "indoor", 3: "indoor", 4: "outdoor", 5: "outdoor", 6: "outdoor"}
    # only thermal-to-visible search exists
    q, g = query_gallery(data, "thermal")
    assert q == data.query and g == data.gallery
    with pytest.raises(ValueError, match="no visible query"):
        query_gallery(data, "visible")


def test_sysu_ignores_non_image_files_and_tolerates_missing_camera_of_test_id(tmp_path):
    root = make_sysu(tmp_path / "sysu", skip={(4, 2), (6, 5)})
    (root / "cam1" / "0001" / "notes.txt").write_text("not an image")
    (root / "cam1" / "0001" / ".hidden.jpg").write_text("hidden")
    data = read_sysu(root)
    assert not any(s.path.endswith((".txt", ".hidden.jpg")) for s in data.train)
    assert not any(s.identity == 2 and s.camera == 4 for s in data.gallery)
    assert not any(s.identity == 5 and s.camera == 6 for s in data.query)


@pytest.mark.parametrize("missing", ["train_id.txt", "val_id.txt", "test_id.txt"])
def test_sysu_missing_split_file(tmp_path, missing):
    root = make_sysu(tmp_path / "sysu", images_per_cam=1)
    (root / "exp" / missing).unlink()
    with pytest.raises(FileNotFoundError, match=missing):
        read_sysu(root)


def test_sysu_missing_camera_folder_and_unknown_camera(tmp_path):
    root = make_sysu(tmp_path / "sysu", images_per_cam=1)
    (root / "cam7").mkdir()
    with pytest.raises(ValueError, match="unknown camera.*cam7"):
        read_sysu(root)
    (root / "cam7").rmdir()
    for f in (root / "cam5").rglob("*.jpg"):
        f.unlink()
    for d in sorted((root / "cam5").iterdir()):
        d.rmdir()
    (root / "cam5").rmdir()
    with pytest.raises(FileNotFoundError, match="cam5"):
        read_sysu(root)


def test_sysu_malformed_id_file(tmp_path):
    root = make_sysu(tmp_path / "sysu", images_per_cam=1)
    (root / "exp" / "test_id.txt").write_text("2,five\n")
    with pytest.raises(ValueError, match=r"test_id\.txt.*'five'"):
        read_sysu(root)
    (root / "exp" / "test_id.txt").write_text("\n")
    with pytest.raises(ValueError, match="no identity"):
        read_sysu(root)


def test_sysu_train_identity_without_thermal_is_named(tmp_path):
    root = make_sysu(tmp_path / "sysu", images_per_cam=1, skip={(3, 7), (6, 7)})
    with pytest.raises(ValueError, match="identity 7 .no thermal"):
        read_sysu(root)


def test_sysu_listed_identity_without_any_image(tmp_path):
    root = make_sysu(tmp_path / "sysu", images_per_cam=1)
    (root / "exp" / "test_id.txt").write_text("2,5,11")
    with pytest.raises(ValueError, match="0011"):
        read_sysu(root)


def test_sysu_overlapping_splits(tmp_path):
    root = make_sysu(tmp_path / "sysu", images_per_cam=1)
    (root / "exp" / "test_id.txt").write_text("2,5,3")
    with pytest.raises(ValueError, match=r"\[3\].*both"):
        read_sysu(root)


def test_sysu_corrupt_image_named_only_when_verifying(tmp_path):
    root = make_sysu(tmp_path / "sysu", images_per_cam=1)
    bad = root / "cam2" / "0005" / "0001.jpg"
    bad.write_bytes(b"\x00garbage, not a jpeg")
    with pytest.raises(ValueError, match=str(bad)):
        read_sysu(root)
    data = read_sysu(root, verify_images=False)
    assert any(s.path == str(bad) for s in data.gallery)
    with pytest.raises(ValueError, match=str(bad)):
        ImageDataset(data.gallery)[[s.path for s in data.gallery].index(str(bad))]


# --------------------------------------------------------------------------- RegDB


def make_regdb(root: Path, trial: int = 1) -> Path:
    lines: dict[str, list[str]] = {}
    for split, ids in (("train", [10, 4, 7]), ("test", [0, 1])):
        for name, folder, mode in (("visible", "Visible", "RGB"), ("thermal", "Thermal", "L")):
            rows = []
            for pid in ids:
                for n in range(2):
                    rel = f"{folder}/{pid}/{split}_{n}.bmp"
                    write_image(root / rel, mode, value=pid * 10 + n)
                    rows.append(f"{rel} {pid}")
            lines[f"{split}_{name}_{trial}.txt"] = rows
    (root / "idx").mkdir(parents=True, exist_ok=True)
    for fname, rows in lines.items():
        (root / "idx" / fname).write_text("\n".join(rows) + "\n\n")
    return root


def test_regdb_trial(tmp_path):
    root = make_regdb(tmp_path / "regdb", trial=3)
    data = read_regdb(root, trial=3)
    assert data.name == "regdb-3" and data.meta["trial"] == 3
    assert data.meta["train_id_map"] == {4: 0, 7: 1, 10: 2}
    assert len(data.train) == 12
    assert [s.modality for s in data.train] == [0] * 6 + [1] * 6
    assert all(s.camera == (1 if s.modality == 0 else 2) for s in data.train + data.query)
    # the test images of both modalities are both query and gallery
    assert data.query == data.gallery and len(data.query) == 8
    for direction, qm in (("visible", 0), ("thermal", 1)):
        q, g = query_gallery(data, direction)
        assert {s.modality for s in q} == {qm} and {s.modality for s in g} == {1 - qm}
        assert len(q) == len(g) == 4
    assert {s.identity for s in data.query} == {0, 1}
    assert all(os.path.isfile(s.path) for s in data.train + data.query)


def test_regdb_errors(tmp_path):
    root = make_regdb(tmp_path / "regdb")
    with pytest.raises(FileNotFoundError, match="test_thermal_2.txt"):
        (root / "idx" / "train_visible_2.txt").write_text((root / "idx" / "train_visible_1.txt").read_text())
        (root / "idx" / "train_thermal_2.txt").write_text((root / "idx" / "train_thermal_1.txt").read_text())
        (root / "idx" / "test_visible_2.txt").write_text((root / "idx" / "test_visible_1.txt").read_text())
        read_regdb(root, trial=2)
    with pytest.raises(ValueError, match="trial"):
        read_regdb(root, trial=0)
    listing = root / "idx" / "train_thermal_1.txt"
    original = listing.read_text()
    listing.write_text(original.replace("Thermal/4/train_1.bmp 4", "Thermal/4/train_1.bmp four"))
    with pytest.raises(ValueError, match=r"train_thermal_1\.txt:4"):
        read_regdb(root)
    listing.write_text(original.replace("Thermal/4/train_1.bmp", "Thermal/4/nope.bmp"))
    with pytest.raises(FileNotFoundError, match="nope.bmp"):
        read_regdb(root)
    listing.write_text("\n".join(l for l in original.splitlines() if not l.endswith(" 7")))
    with pytest.raises(ValueError, match="identity 7 .no thermal"):
        read_regdb(root)


# --------------------------------------------------------------------------- manifest

HEADER = "path,identity,camera,modality,split,scene\n"


def make_manifest(root: Path, rows: list[str], header: str = HEADER) -> Path:
    for row in rows:
        rel = row.split(",")[0]
        if rel and not (root / rel).exists():
            write_image(root / rel, "L" if "thermal" in row else "RGB")
    path = root / "npu.csv"
    path.write_text(header + "\n".join(rows) + "\n")
    return path


NPU_ROWS = [
    "v/1_a.jpg,100,1,visible,train,indoor",
    "v/1_b.png,100,2,0,train,outdoor",
    "t/1_a.png,100,5,thermal,train,indoor",
    "v/2_a.jpg,50,1,visible,train,indoor",
    "t/2_a.png,50,6,1,train,outdoor",
    "v/3_a.jpg,7,1,visible,test,indoor",
    "t/3_a.png,7,5,thermal,test,indoor",
    "v/4_a.jpg,8,2,visible,query,outdoor",
    "t/4_a.png,8,6,thermal,gallery,outdoor",
    "v/5_a.jpg,9,2,visible,val,outdoor",
]


def test_manifest_reads_every_split(tmp_path):
    csv_path = make_manifest(tmp_path, NPU_ROWS)
    data = read_manifest(csv_path)
    assert data.name == "npu"
    assert data.meta["train_id_map"] == {50: 0, 100: 1}
    assert [(s.identity, s.camera, s.modality) for s in data.train] == [(1, 1, 0), (1, 2, 0), (1, 5, 1), (0, 1, 0), (0, 6, 1)]
    assert data.train[0].path == str(tmp_path / "v/1_a.jpg")
    assert [os.path.basename(s.path) for s in data.query] == ["4_a.jpg", "3_a.jpg", "3_a.png"]
    assert [os.path.basename(s.path) for s in data.gallery] == ["4_a.png", "3_a.jpg", "3_a.png"]
    assert [s.identity for s in data.meta["val"]] == [9]
    assert data.meta["camera_modality"] == {1: 0, 2: 0, 5: 1, 6: 1}
    assert data.meta["camera_scene"] == {1: "indoor", 2: "outdoor", 5: "indoor", 6: "outdoor"}
    q, g = query_gallery(data, "visible")
    assert [s.identity for s in q] == [8, 7] and [s.identity for s in g] == [8, 7]
    indoor = [c for c, scene in data.meta["camera_scene"].items() if scene == "indoor"]
    assert [s.identity for s in select(g, cameras=indoor)] == [7]


def test_manifest_root_column_order_and_scene_argument(tmp_path):
    images = tmp_path / "images"
    rows = ["split,modality,camera,identity,path,extra"]
    for pid in (3, 4):
        for mod, cam in (("rgb", 1), ("ir", 2)):
            rel = f"{pid}_{cam}.png"
            write_image(images / rel)
            rows.append(f"TRAIN,{mod},{cam},{pid},{rel},whatever")
    csv_path = tmp_path / "meta" / "list.csv"
    csv_path.parent.mkdir()
    csv_path.write_text("\n".join(rows) + "\n")
    data = read_manifest(csv_path, root=images, camera_scene={1: "Indoor", 2: "outdoor"}, name="mine")
    assert data.name == "mine" and len(data.train) == 4 and data.query == []
    assert data.meta["camera_scene"] == {1: "indoor", 2: "outdoor"}
    with pytest.raises(ValueError, match="unknown camera 2"):
        read_manifest(csv_path, root=images, camera_scene={1: "indoor"})
    with pytest.raises(ValueError, match="unknown camera 2"):
        read_manifest(csv_path, root=images, cameras=[1, 3])


@pytest.mark.parametrize(
    "bad_row, message",
    [
        ("v/9.jpg,1x,1,visible,train,indoor", r"npu\.csv:12: identity"),
        ("v/9.jpg,1,,visible,train,indoor", r"npu\.csv:12: camera"),
        ("v/9.jpg,1,1,ultraviolet,train,indoor", r"npu\.csv:12: unknown modality 'ultraviolet'"),
        ("v/9.jpg,1,1,visible,training,indoor", r"npu\.csv:12: unknown split 'training'"),
        ("v/9.jpg,1,1,visible,train", r"npu\.csv:12: expected 6 fields"),
        ("v/9.jpg,1,5,visible,train,indoor", r"npu\.csv:12: camera 5 .* one modality"),
        ("v/9.jpg,1,1,visible,train,outdoor", r"npu\.csv:12: camera 1 has scene 'outdoor'.*npu\.csv:2"),
        ("v/1_a.jpg,100,1,visible,train,indoor", r"npu\.csv:12: .*listed twice.*line 2"),
        (",1,1,visible,train,indoor", r"npu\.csv:12: empty path"),
    ],
)
def test_manifest_malformed_rows_name_the_line(tmp_path, bad_row, message):
    csv_path = make_manifest(tmp_path, NPU_ROWS + [bad_row])
    with pytest.raises(ValueError, match=message):
        read_manifest(csv_path)


def test_manifest_file_level_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.csv"):
        read_manifest(tmp_path / "nothing.csv")
    csv_path = make_manifest(tmp_path, NPU_ROWS, header="path,identity,camera,modality\n")
    with pytest.raises(ValueError, match="missing split"):
        read_manifest(csv_path)
    csv_path = make_manifest(tmp_path, NPU_ROWS[:1], header="")  # no header at all
    with pytest.raises(ValueError, match="header"):
        read_manifest(csv_path)
    csv_path.write_text(HEADER)
    with pytest.raises(ValueError, match="no rows"):
        read_manifest(csv_path)
    csv_path.write_text("")
    with pytest.raises(ValueError, match="empty manifest"):
        read_manifest(csv_path)


def test_manifest_missing_corrupt_image_and_single_modality_identity(tmp_path):
    csv_path = make_manifest(tmp_path, NPU_ROWS)
    (tmp_path / "t/3_a.png").unlink()
    with pytest.raises(FileNotFoundError, match="3_a.png"):
        read_manifest(csv_path)
    (tmp_path / "t/3_a.png").write_bytes(b"PNG? no")
    with pytest.raises(ValueError, match="3_a.png"):
        read_manifest(csv_path)
    read_manifest(csv_path, verify_images=False)  # header checks are optional
    csv_path = make_manifest(tmp_path, [r for r in NPU_ROWS if not r.startswith("t/2_a")])
    with pytest.raises(ValueError, match="identity 50 .no thermal"):
        read_manifest(csv_path, verify_images=False)


# --------------------------------------------------------------------------- records helpers


def test_records_helpers():
    assert [parse_modality(v) for v in ("visible", " RGB", "0", 0, "thermal", "IR", "infrared", 1)] == [0] * 4 + [1] * 4
    with pytest.raises(ValueError, match="unknown modality"):
        parse_modality("2")
    samples = [Sample("a", 30, 1, 0), Sample("b", 10, 2, 1), Sample("c", 30, 2, 1), Sample("d", 10, 1, 0)]
    relabelled, id_map = relabel(samples)
    assert id_map == {10: 0, 30: 1}
    assert [s.identity for s in relabelled] == [1, 0, 1, 0] and [s.path for s in relabelled] == list("abcd")
    check_both_modalities(samples, "x")
    with pytest.raises(ValueError, match="x: .*identity 30 .no thermal"):
        check_both_modalities(samples[:2] + samples[3:], "x")
    assert select(samples, modality=1, cameras=[2]) == [samples[1], samples[2]]


# --------------------------------------------------------------------------- ImageDataset


def test_image_dataset_reads_png_exactly_and_repeats_gray(tmp_path):
    rgb = np.arange(4 * 3 * 3, dtype=np.uint8).reshape(4, 3, 3) * 7
    Image.fromarray(rgb).save(tmp_path / "v.png")
    gray = (np.arange(12, dtype=np.uint8) * 20).reshape(4, 3)
    Image.fromarray(gray, mode="L").save(tmp_path / "t.png")
    ds = ImageDataset([Sample(str(tmp_path / "v.png"), 2, 1, 0), Sample(str(tmp_path / "t.png"), 5, 3, 1)])
    assert len(ds) == 2 and ds.labels == [2, 5] and ds.modalities == [0, 1]
    image, label, modality, camera = ds[0]
    assert image.dtype == torch.float32 and image.shape == (3, 4, 3)
    torch.testing.assert_close(image, torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
    image, label, modality, camera = ds[1]
    assert (label, modality, camera) == (5, 1, 3)
    for c in range(3):
        torch.testing.assert_close(image[c], torch.from_numpy(gray).float() / 255)
    assert read_image(str(tmp_path / "t.png")).dtype == torch.uint8


def test_image_dataset_resize_transform_and_custom_loader(tmp_path):
    calls = []

    def loader(sample):
        calls.append(sample.path)
        return torch.full((1, 5, 7), 255, dtype=torch.uint8)

    ds = ImageDataset([Sample("synthetic://0", 1, 2, 1)], loader=loader, size=(16, 8), transform=lambda x: x * 2)
    image, *_ = ds[0]
    assert calls == ["synthetic://0"]
    assert image.shape == (3, 16, 8)
    torch.testing.assert_close(image, torch.full((3, 16, 8), 2.0))
    write_image(tmp_path / "x.jpg", size=(20, 30))
    image, *_ = ImageDataset([Sample(str(tmp_path / "x.jpg"), 0, 1, 0)], size=(12, 6))[0]
    assert image.shape == (3, 12, 6) and 0.0 <= image.min() and image.max() <= 1.0


@pytest.mark.parametrize(
    "output, error",
    [
        (torch.zeros(2, 4, 4, dtype=torch.uint8), "shape"),
        (torch.zeros(4, dtype=torch.uint8), "shape"),
        (torch.zeros(3, 4, 4, dtype=torch.int32), "dtype|int32"),
    ],
)
def test_image_dataset_rejects_bad_loader_output(output, error):
    ds = ImageDataset([Sample("key-7", 0, 1, 0)], loader=lambda s: output)
    with pytest.raises(ValueError, match=f"key-7.*({error})"):
        ds[0]


def test_image_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.jpg"):
        ImageDataset([Sample(str(tmp_path / "absent.jpg"), 0, 1, 0)])[0]
    with pytest.raises(ValueError, match="size"):
        ImageDataset([], size=(0, 4))
    with pytest.raises(TypeError, match="torch.Tensor"):
        ImageDataset([Sample("k", 0, 1, 0)], loader=lambda s: np.zeros((3, 2, 2), np.uint8))[0]
