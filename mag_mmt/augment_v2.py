"""MAG inside ``torchvision.transforms.v2`` pipelines, for registered visible/infrared pairs.

In RGB-thermal detection (LLVIP) and segmentation the two images of a pair are registered:
pixel ``(y, x)`` shows the same point in both, so the boxes and masks of one hold for the
other. Exchanging a random box between them (MAG) therefore changes neither: the transform
touches only the two images and passes ``BoundingBoxes``, ``Mask``, labels and anything else
through as the same objects, so it composes with the geometric v2 transforms (flips, crops,
resizes), which move images and boxes together.

:class:`ModalityAugmentV2` takes a sample the way v2 pipelines pass it:

* a dict holding the two images under ``visible_key`` / ``infrared_key`` (default
  ``"visible"`` / ``"infrared"``), e.g. ``{"visible": Image, "infrared": Image, "boxes":
  BoundingBoxes, "labels": Tensor}``;
* any other structure (a tuple ``(visible, infrared, target)``, nested containers) with
  exactly two ``tv_tensors.Image`` leaves: the first is visible, the second infrared.

Images are ``(C, H, W)`` (one sample) or ``(B, C, H, W)`` (a batch, pair ``i`` = row ``i``),
float or uint8, the same size; a one-channel infrared image is repeated to the visible
channels (as :class:`~mag_mmt.augment.ModalityAugment`). Like torchvision's ``CutMix`` and
``MixUp``, the transform acts on two inputs jointly, so it overrides ``forward``.

Example::

    >>> import torch
    >>> from torchvision import tv_tensors
    >>> from torchvision.transforms import v2
    >>> sample = {
    ...     "visible": tv_tensors.Image(torch.zeros(3, 32, 32, dtype=torch.uint8)),
    ...     "infrared": tv_tensors.Image(torch.full((3, 32, 32), 255, dtype=torch.uint8)),
    ...     "boxes": tv_tensors.BoundingBoxes([[2, 2, 20, 30]], format="XYXY", canvas_size=(32, 32)),
    ...     "labels": torch.tensor([1]),
    ... }
    >>> pipeline = v2.Compose([ModalityAugmentV2(p=1.0), v2.RandomHorizontalFlip(p=0.0)])
    >>> out = pipeline(sample)
    >>> type(out["visible"]).__name__, bool(out["visible"].any()), out["boxes"] is sample["boxes"]
    ('Image', True, True)
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.utils._pytree import tree_flatten, tree_unflatten
from torchvision import tv_tensors
from torchvision.transforms import v2

from mag_mmt.augment import ModalityAugment
from mag_mmt.errors import UserError
from mag_mmt.functional.exchange import DEFAULT_RATIO, DEFAULT_SCALE, Placement, RatioSampling

__all__ = ["ModalityAugmentV2"]


class ModalityAugmentV2(v2.Transform):
    """Modality augmentation (MAG) on registered visible/infrared pairs, as a v2 transform.

    Args:
        p, scale, ratio, same_on_batch, ratio_sampling, placement, generator: as
            :class:`~mag_mmt.augment.ModalityAugment` (``p``: probability per pair). Leave
            ``generator`` unset inside ``DataLoader`` workers: a seed would repeat the same
            boxes in every worker, while torch's global RNG is seeded per worker.
        visible_key, infrared_key: where a dict sample holds the two images.

    Call ``t(sample)`` (or ``t(*inputs)``, as ``v2.Compose`` does); returns the same structure
    with the two images replaced (same tv_tensor type, dtype; shape ``(..., C, H, W)`` with
    ``C`` the visible channels) and every other entry the very same object. The exchange
    parameters of the last call are in ``t.augment._params``.
    """

    def __init__(
        self,
        p: float = 0.5,
        scale: Tuple[float, float] = DEFAULT_SCALE,
        ratio: Tuple[float, float] = DEFAULT_RATIO,
        same_on_batch: bool = False,
        ratio_sampling: RatioSampling = "uniform",
        placement: Placement = "clip",
        generator: Optional[Union[int, torch.Generator]] = None,
        visible_key: str = "visible",
        infrared_key: str = "infrared",
    ) -> None:
        super().__init__()
        self.augment = ModalityAugment(
            p=p, scale=scale, ratio=ratio, same_on_batch=same_on_batch,
            ratio_sampling=ratio_sampling, placement=placement, generator=generator,
        )
        self.visible_key, self.infrared_key = visible_key, infrared_key

    def extra_repr(self) -> str:
        return f"{self.augment.extra_repr()}, visible_key={self.visible_key!r}, infrared_key={self.infrared_key!r}"

    def _exchange(self, visible: Tensor, infrared: Tensor) -> Tuple[Tensor, Tensor]:
        for name, x in (("visible", visible), ("infrared", infrared)):
            if not isinstance(x, Tensor) or x.dim() not in (3, 4):
                shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise UserError(f"ModalityAugmentV2: the {name} image must be a (C, H, W) or (B, C, H, W) tensor, got {shape}")
        if visible.dim() != infrared.dim():
            raise UserError(
                "ModalityAugmentV2: visible and infrared must both be one image (C, H, W) or both a batch, "
                f"got {tuple(visible.shape)} and {tuple(infrared.shape)}"
            )
        single = visible.dim() == 3
        v = visible.as_subclass(Tensor)
        t = infrared.as_subclass(Tensor)
        if single:
            v, t = v.unsqueeze(0), t.unsqueeze(0)
        try:
            v, t = self.augment(v, t)
        except UserError:
            raise
        except ValueError as exc:  # the shared checks of ModalityAugment (size, dtype, device)
            raise UserError(f"ModalityAugmentV2: {exc}") from None
        if single:
            v, t = v.squeeze(0), t.squeeze(0)
        return _rewrap(v, visible), _rewrap(t, infrared)

    def forward(self, *inputs: Any) -> Any:
        sample = inputs if len(inputs) > 1 else inputs[0]
        if isinstance(sample, Mapping):
            missing = [k for k in (self.visible_key, self.infrared_key) if k not in sample]
            if missing:
                raise UserError(
                    f"ModalityAugmentV2: the sample has no {' or '.join(repr(k) for k in missing)} "
                    f"(keys: {sorted(map(str, sample))}); set visible_key / infrared_key"
                )
            out = copy.copy(sample)
            out[self.visible_key], out[self.infrared_key] = self._exchange(
                sample[self.visible_key], sample[self.infrared_key]
            )
            return out
        flat, spec = tree_flatten(sample)
        where = [i for i, leaf in enumerate(flat) if isinstance(leaf, tv_tensors.Image)]
        if len(where) != 2:
            raise UserError(
                "ModalityAugmentV2 needs a dict with the visible and infrared images or exactly two "
                f"tv_tensors.Image in the sample (visible first), found {len(where)}"
            )
        flat = list(flat)
        flat[where[0]], flat[where[1]] = self._exchange(flat[where[0]], flat[where[1]])
        return tree_unflatten(flat, spec)


def _rewrap(result: Tensor, like: Tensor) -> Tensor:
    """``result`` as the tv_tensor type of ``like`` (plain tensors stay plain)."""
    if isinstance(like, tv_tensors.TVTensor):
        return tv_tensors.wrap(result, like=like)
    return result
