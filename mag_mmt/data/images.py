"""Reading images from disk and the torch ``Dataset`` over a list of :class:`Sample`.

Output convention of :class:`ImageDataset`: ``float32`` tensors ``(3, H, W)`` with values in
``[0, 1]``. Single-channel (thermal) images are repeated to three equal channels, so both
modalities enter the network with the same shape (paper section 3).
"""

from __future__ import annotations

import os
from typing import BinaryIO, Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from ..errors import MissingFileError, UserError
from .records import Sample

Loader = Callable[[Sample], torch.Tensor]

#: file name endings the directory readers treat as images
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


#: what a complete file of the format ends with (trailing NUL / blank padding is ignored)
_END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82"}


def _looks_complete(fh: BinaryIO, size: int, image_format: str | None) -> bool:
    """Cheap end-of-data test on the open file ``fh`` of ``size`` bytes: JPEG ends with EOI,
    PNG with IEND, BMP is as long as its header says.

    ``False`` means "not proven complete" (a truncated file, trailing bytes after the image,
    or a format without an end marker); the caller then decodes the file to decide.
    """
    if image_format == "BMP":
        fh.seek(0)
        header = fh.read(6)
        return len(header) == 6 and size >= int.from_bytes(header[2:6], "little")
    marker = _END_MARKERS.get(image_format or "")
    if marker is None:
        return False
    fh.seek(max(0, size - 64))
    return fh.read().rstrip(b"\x00\r\n\t ").endswith(marker)


def check_image_file(path: str, decode: bool = False) -> None:
    """Check that ``path`` is a complete image PIL can read, without decoding it where possible.

    The header is opened with PIL; then the file's end is checked (JPEG: the end-of-image
    marker, PNG: the ``IEND`` chunk, BMP: the length its header gives). Only a file that
    fails that test (truncated, trailing bytes, another format) is decoded in full, so a
    file cut off after a valid header is caught while a valid dataset costs a header read
    and a 64-byte tail read per image. ``decode=True`` decodes every file.

    Raises:
        MissingFileError: no file at ``path``.
        UserError: the file is not an image, is truncated or corrupt, or has an empty size;
            the message names the file.

    Example:
        >>> import tempfile, os
        >>> from PIL import Image
        >>> path = os.path.join(tempfile.mkdtemp(), "a.png")
        >>> Image.effect_noise((16, 32), 60).save(path)
        >>> check_image_file(path)
        >>> with open(path, "r+b") as fh: _ = fh.truncate(os.path.getsize(path) // 2)
        >>> try:
        ...     check_image_file(path)
        ... except UserError as exc:
        ...     print("truncated or corrupt" in str(exc))
        True
    """
    if not os.path.isfile(path):
        raise MissingFileError(f"image file not found: {path}")
    try:
        with open(path, "rb") as fh, Image.open(fh) as im:
            width, height = im.size
            if decode or not _looks_complete(fh, os.fstat(fh.fileno()).st_size, im.format):
                im.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"image {path} is truncated or corrupt: {exc}") from exc
    if width <= 0 or height <= 0:
        raise UserError(f"image {path} has an empty size {width}x{height}")


def check_sample_files(samples: Sequence[Sample], verify_images: bool | str = True) -> None:
    """Every sample's file must exist; with ``verify_images`` it must be a complete image.

    ``verify_images``: ``False`` checks existence only, ``True`` runs :func:`check_image_file`
    (header + end-of-data test), ``"decode"`` decodes every image in full.
    Raises ``MissingFileError`` / ``UserError`` naming the first bad file.
    """
    if verify_images not in (True, False, "decode"):
        raise UserError(f"verify_images must be True, False or 'decode', got {verify_images!r}")
    for sample in samples:
        if verify_images:
            check_image_file(sample.path, decode=verify_images == "decode")
        elif not os.path.isfile(sample.path):
            raise MissingFileError(f"image file not found: {sample.path}")


def read_image(path: str) -> torch.Tensor:
    """The image at ``path`` as a ``uint8`` tensor ``(3, H, W)`` (grayscale repeated to RGB).

    Raises ``MissingFileError`` / ``UserError`` naming the file when it is missing or
    cannot be decoded (e.g. truncated).
    """
    if not os.path.isfile(path):
        raise MissingFileError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            array = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise UserError(f"cannot read image {path}: {exc}") from exc
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
                raise UserError(f"size must be (H, W) with positive integers, got {size!r}")
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
