"""Reading images from disk and the torch ``Dataset`` over a list of :class:`Sample`.

Output convention of :class:`ImageDataset`: ``float32`` tensors ``(3, H, W)`` with values in
``[0, 1]``. Single-channel (thermal) images are repeated to three equal channels, so both
modalities enter the network with the same shape (paper section 3).
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from .records import Sample

Loader = Callable[[Sample], torch.Tensor]

#: file name endings the directory readers treat as images
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def check_image_file(path: str) -> None:
    """Open the image header at ``path`` with PIL (cheap: no pixel decoding).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not an image PIL can identify (corrupt or not an image).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            width, height = im.size
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc
    if width <= 0 or height <= 0:
        raise ValueError(f"image {path} has an empty size {width}x{height}")


def check_sample_files(samples: Sequence[Sample], verify_images: bool = True) -> None:
    """Every sample's file must exist; with ``verify_images`` its header must open with PIL.

    Raises ``FileNotFoundError`` / ``ValueError`` naming the first bad file.
    """
    for sample in samples:
        if verify_images:
            check_image_file(sample.path)
        elif not os.path.isfile(sample.path):
            raise FileNotFoundError(f"image file not found: {sample.path}")


def read_image(path: str) -> torch.Tensor:
    """The image at ``path`` as a ``uint8`` tensor ``(3, H, W)`` (grayscale repeated to RGB).

    Raises ``FileNotFoundError`` / ``ValueError`` naming the file when it is missing or
    cannot be decoded.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            array = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def default_loader(sample: Sample) -> torch.Tensor:
    """The loader used when a dataset has none: :func:`read_image` of ``sample.path``."""
    return read_image(sample.path)


def to_float_rgb(image: torch.Tensor, source: str = "image") -> torch.Tensor:
    """A loader's output as ``float32 (3, H, W)`` in ``[0, 1]``.

    Accepts ``uint8`` (divided by 255) or floating tensors (taken as already in ``[0, 1]``)
    of shape ``(H, W)``, ``(1, H, W)`` or ``(3, H, W)``; one channel is repeated to three.
    """
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{source}: the loader must return a torch.Tensor, got {type(image).__name__}")
    if image.dim() == 2:
        image = image.unsqueeze(0)
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(
            f"{source}: the loader must return (3, H, W), (1, H, W) or (H, W), got shape {tuple(image.shape)}"
        )
    if image.dtype == torch.uint8:
        image = image.to(torch.float32).div_(255.0)
    elif image.is_floating_point():
        image = image.to(torch.float32)
    else:
        raise ValueError(f"{source}: the loader must return uint8 or floating pixels, got {image.dtype}")
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1).contiguous()
    return image


class ImageDataset(Dataset):
    """A map-style dataset over a list of :class:`Sample`.

    ``dataset[i]`` is ``(image, label, modality, camera)``: ``image`` a ``float32`` tensor
    ``(3, H, W)`` in ``[0, 1]`` (resized to ``size`` if given, before ``transform``),
    ``label``/``modality``/``camera`` Python ints (the default collate stacks them into
    ``int64`` tensors).

    Args:
        samples: the records, e.g. ``data.train``.
        loader: ``Sample -> Tensor`` (``uint8`` or float in ``[0, 1]``; ``(3, H, W)``,
            ``(1, H, W)`` or ``(H, W)``); ``None`` reads ``sample.path`` with PIL. Pass
            ``data.loader`` for synthetic data.
        transform: applied to the float image last (e.g. torchvision v2 transforms).
        size: ``(H, W)`` to resize to (bilinear, antialiased), or ``None`` to keep.

    Example::

        >>> from mag_mmt.data import ImageDataset, Sample
        >>> ds = ImageDataset([Sample("x", 3, 1, 1)], loader=lambda s: torch.zeros(1, 8, 4, dtype=torch.uint8),
        ...                   size=(16, 8))
        >>> image, label, modality, camera = ds[0]
        >>> tuple(image.shape), label, modality, camera
        ((3, 16, 8), 3, 1, 1)
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        loader: Loader | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        size: tuple[int, int] | None = None,
    ) -> None:
        if size is not None:
            if len(size) != 2 or any(int(v) != v or v <= 0 for v in size):
                raise ValueError(f"size must be (H, W) with positive integers, got {size!r}")
            size = (int(size[0]), int(size[1]))
        self.samples = list(samples)
        self.loader = loader if loader is not None else default_loader
        self.transform = transform
        self.size = size

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[int]:
        return [s.identity for s in self.samples]

    @property
    def modalities(self) -> list[int]:
        return [s.modality for s in self.samples]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, int]:
        sample = self.samples[index]
        image = to_float_rgb(self.loader(sample), source=sample.path)
        if self.size is not None and tuple(image.shape[-2:]) != self.size:
            image = torch.nn.functional.interpolate(
                image.unsqueeze(0), size=self.size, mode="bilinear", align_corners=False, antialias=True
            ).squeeze(0).clamp_(0.0, 1.0)
        if self.transform is not None:
            image = self.transform(image)
        return image, sample.identity, sample.modality, sample.camera


__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageDataset",
    "check_image_file",
    "check_sample_files",
    "default_loader",
    "read_image",
    "to_float_rgb",
]
