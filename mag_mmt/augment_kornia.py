"""MAG as a kornia augmentation: :class:`StackedModalityAugment` on one stacked tensor.

Imports kornia; :class:`mag_mmt.ModalityAugment` (two tensors) does not.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from kornia.augmentation import IntensityAugmentationBase2D
from torch import Tensor

from mag_mmt.augment import _ExchangeOptions
from mag_mmt.functional.exchange import DEFAULT_RATIO, DEFAULT_SCALE, Placement, RatioSampling, modality_exchange

__all__ = ["StackedModalityAugment"]


class StackedModalityAugment(IntensityAugmentationBase2D, _ExchangeOptions):
    """MAG on one stacked tensor ``(2B, C, H, W)``: rows ``0..B-1`` visible, ``B..2B-1`` thermal,
    aligned by index. A kornia augmentation: it follows kornia's ``p`` / ``same_on_batch`` /
    ``_params`` conventions and sits in ``kornia.augmentation.AugmentationSequential``.

    ``batch_prob`` in ``_params`` has 2B entries (the pair's flag, repeated for both halves), so
    kornia's per-row blend agrees with the per-pair decision. Inside ``AugmentationSequential``
    kornia calls ``forward_parameters(batch_shape)`` first, so draws happen on the module's device
    (``.to(device)``, kornia's convention); called directly, draws happen on the input's device.
    Float inputs (kornia's image convention); use :class:`ModalityAugment` for uint8.

    Example:
        >>> import kornia.augmentation as K
        >>> seq = K.AugmentationSequential(StackedModalityAugment(p=1.0), K.RandomHorizontalFlip(p=0.0))
        >>> x = torch.rand(8, 3, 64, 32)
        >>> y = seq(x)
        >>> bool(torch.equal(y, seq(x, params=seq._params))), tuple(y.shape)
        (True, (8, 3, 64, 32))
    """

    def __init__(
        self,
        p: float = 0.5,
        scale: Tuple[float, float] = DEFAULT_SCALE,
        ratio: Tuple[float, float] = DEFAULT_RATIO,
        same_on_batch: bool = False,
        ratio_sampling: RatioSampling = "uniform",
        placement: Placement = "clip",
        keepdim: bool = False,
    ) -> None:
        super().__init__(p=p, same_on_batch=same_on_batch, keepdim=keepdim)
        self._set_options(p, scale, ratio, ratio_sampling, placement)

    def _pair_params(self, batch_shape: Tuple[int, ...], device: torch.device) -> Dict[str, Tensor]:
        n = batch_shape[0]
        if n % 2:
            raise ValueError(f"the stacked batch must hold 2B images (visible, then thermal), got {n}")
        params = self._sample(n // 2, batch_shape[-2], batch_shape[-1], device, None, self.same_on_batch)
        params["batch_prob"] = torch.cat([params["batch_prob"], params["batch_prob"]]).to(self.dtype)
        params["forward_input_shape"] = torch.tensor(batch_shape, dtype=torch.long)
        return params

    def forward_parameters(self, batch_shape: Tuple[int, ...]) -> Dict[str, Tensor]:
        return self._pair_params(tuple(batch_shape), self.device)

    def forward(self, input: Tensor, params: Optional[Dict[str, Tensor]] = None, **kwargs: object) -> Tensor:
        if params is None and isinstance(input, Tensor) and input.dim() == 4:
            params = self._pair_params(tuple(input.shape), input.device)
        return super().forward(input, params=params, **kwargs)  # type: ignore[arg-type]

    def apply_transform(
        self,
        input: Tensor,
        params: Dict[str, Tensor],
        flags: Dict[str, object],
        transform: Optional[Tensor] = None,
    ) -> Tensor:
        n = params["boxes"].shape[0]
        boxes = params["boxes"].to(input.device)
        apply = params["batch_prob"][:n].to(input.device) > 0.5
        if input.shape[0] != 2 * n:
            # kornia < 0.9 calls apply_transform with only the rows whose flag is set (when some,
            # not all, are): the applied pairs' visible rows, then their thermal rows, in order.
            # Select the same pairs' boxes (boolean indexing: a host sync, as kornia's own there).
            boxes = boxes[apply]
            if input.shape[0] != 2 * boxes.shape[0]:
                raise ValueError(
                    f"stacked input of {input.shape[0]} images does not match params for {n} pairs "
                    f"({boxes.shape[0]} applied)"
                )
            apply = torch.ones(boxes.shape[0], dtype=torch.bool, device=input.device)
        k = boxes.shape[0]
        v, t = modality_exchange(input[:k], input[k:], boxes, apply)
        return torch.cat([v, t], dim=0)
