"""Datasets: readers (SYSU-MM01, RegDB, CSV manifest; LLVIP for detection), the image ``Dataset`` and the
cross-modality identity sampler. Everything speaks :class:`Sample` / :class:`ReIDData`.

Example::

    from torch.utils.data import DataLoader
    from mag_mmt.data import read_sysu, ImageDataset, CrossModalityIdentitySampler, split_batch

    data = read_sysu("/data/SYSU-MM01")
    train = ImageDataset(data.train, loader=data.loader, size=(288, 144))
    sampler = CrossModalityIdentitySampler(data.train, num_identities=8, num_instances=4)
    loader = DataLoader(train, batch_sampler=sampler, num_workers=4)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for images, labels, modalities, cameras in loader:
            visible, thermal, label_v, label_t = split_batch(images, labels, modalities)
"""

from __future__ import annotations

from .images import (
    IMAGE_EXTENSIONS,
    ImageDataset,
    check_image_file,
    check_sample_files,
    default_loader,
    read_image,
    to_float_rgb,
)
from .llvip import DetectionPair, LLVIPDataset, read_llvip, read_voc_boxes
from .manifest import read_manifest
from .records import (
    MODALITY_ALIASES,
    MODALITY_NAMES,
    DATASET_PROTOCOLS,
    THERMAL,
    VISIBLE,
    ReIDData,
    Sample,
    as_arrays,
    check_both_modalities,
    check_queries_have_gallery,
    parse_modality,
    query_gallery,
    relabel,
    select,
)
from .regdb import read_regdb
from .sampler import CrossModalityIdentitySampler, split_batch
from .synthetic import SyntheticRenderer, make_synthetic
from .sysu import SYSU_CAMERA_MODALITY, SYSU_CAMERA_SCENE, read_sysu

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
    "read_sysu",
    "read_regdb",
    "read_manifest",
    "read_llvip",
    "read_voc_boxes",
    "DetectionPair",
    "LLVIPDataset",
    "make_synthetic",
    "SyntheticRenderer",
    "SYSU_CAMERA_MODALITY",
    "SYSU_CAMERA_SCENE",
    "IMAGE_EXTENSIONS",
    "ImageDataset",
    "check_image_file",
    "check_sample_files",
    "default_loader",
    "read_image",
    "to_float_rgb",
    "CrossModalityIdentitySampler",
    "split_batch",
]
