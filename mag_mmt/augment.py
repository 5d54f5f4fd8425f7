"""Modality augmentation (MAG) as a module: :class:`ModalityAugment` on a visible and a thermal batch.

With probability ``p`` per pair, one random box is exchanged between a visible image and a
thermal image of the same identity (docs/method.md#mag-sampling-law). The tensor functions
live in :mod:`mag_mmt.functional.exchange`; :class:`~mag_mmt.augment_kornia.StackedModalityAugment`
is the kornia form on one stacked ``(2B, C, H, W)`` tensor (``from mag_mmt.augment import
StackedModalityAugment`` loads kornia only then).

Replay: ``params = aug.forward_parameters(visible, thermal)`` draws without applying;
``aug(visible, thermal, params=params)`` applies exactly those boxes. ``aug._params`` (kornia's
name) holds the parameters of the last call.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from mag_mmt._validation import check_same_device, check_tensor
from mag_mmt.errors import UserError
from mag_mmt.functional.exchange import (
    DEFAULT_RATIO,
    DEFAULT_SCALE,
    Placement,
    RatioSampling,
    _check_images,
    _check_options,
    match_partners,
    modality_exchange,
    sample_exchange_params,
)

__all__ = ["ModalityAugment", "StackedModalityAugment"]


class _ExchangeOptions:
    """Options shared by both module forms."""

    def _set_options(self, p: float, scale: Tuple[float, float], ratio: Tuple[float, float],
                     ratio_sampling: str, placement: str) -> None:
        self.p, self.scale, self.ratio = _check_options(p, scale, ratio, ratio_sampling, placement)
        self.ratio_sampling = ratio_sampling
        self.placement = placement

    def _sample(self, batch_size: int, height: int, width: int, device: torch.device,
                generator: Optional[torch.Generator], same_on_batch: bool) -> Dict[str, Tensor]:
        return sample_exchange_params(
            batch_size, height, width, p=self.p, scale=self.scale, ratio=self.ratio,
            same_on_batch=same_on_batch, ratio_sampling=self.ratio_sampling,  # type: ignore[arg-type]
            placement=self.placement, device=device, generator=generator,  # type: ignore[arg-type]
        )


class ModalityAugment(nn.Module, _ExchangeOptions):
    """Modality augmentation (MAG): with probability ``p`` per pair, exchange one random box
    between a visible image and its thermal partner. Labels are unchanged. The sampling law and
    its defaults: docs/method.md#mag-sampling-law.

    Args:
        p: probability that a pair is augmented.
        scale: range of the box area as a fraction of the image (``A``); default (0.02, 0.4).
        ratio: range of the aspect ratio ``r = h / w``; default (0.3, 3.3).
        same_on_batch: one draw (apply flag and box) for the whole batch.
        ratio_sampling: ``"uniform"`` (our reading of the paper) or ``"log_uniform"``
            (torchvision/timm).
        placement: ``"clip"`` (our reading: uniform centre, box clipped) or ``"inside"``.
        generator: an ``int`` seed (a generator is made lazily on each input device) or a
            ``torch.Generator`` (must live on the input's device); None uses torch's global RNG.

    Call ``aug(visible, thermal, visible_labels=None, thermal_labels=None, params=None)``:

    * ``visible`` (B, C, H, W), ``thermal`` (B, C or 1, H, W): float16/bfloat16/float32/64 or
      uint8, same dtype and device, same H and W. One-channel thermal is repeated to C.
    * Without labels, pairs are aligned by batch index (the AGW/CAJ sampler): no host sync.
    * With both label tensors, partners come from :func:`~mag_mmt.functional.match_partners`
      (same index if the labels are aligned, otherwise a random same-identity image of the other
      modality; no partner: unchanged). Batch sizes may then differ. No host sync either.
    * ``params``: apply these parameters instead of drawing: from :meth:`forward_parameters`
      (draw first, apply later) or ``aug._params`` (kornia's name: the last call's), so
      ``aug(v, t, params=aug._params)`` reproduces the last call exactly.

    Returns ``(visible', thermal')``, each (B, C, H, W) in the input dtype. The parameters (see
    :func:`~mag_mmt.functional.sample_exchange_params`; the label path adds ``thermal_boxes``,
    ``thermal_batch_prob``, ``visible_partner``, ``thermal_partner``) of the last call are in
    ``aug._params``.

    Example:
        >>> import torch
        >>> aug = ModalityAugment(p=1.0, generator=0)
        >>> v, t = torch.rand(8, 3, 288, 144), torch.rand(8, 1, 288, 144)
        >>> params = aug.forward_parameters(v, t)          # or aug.forward_parameters(v.shape)
        >>> v2, t2 = aug(v, t, params=params)
        >>> v3, t3 = aug(v, t, params=aug._params)          # replay the last call
        >>> bool(torch.equal(v2, v3) and torch.equal(t2, t3)), tuple(t2.shape)
        (True, (8, 3, 288, 144))
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
    ) -> None:
        super().__init__()
        self._set_options(p, scale, ratio, ratio_sampling, placement)
        self.same_on_batch = bool(same_on_batch)
        if generator is not None and not isinstance(generator, (int, torch.Generator)):
            raise ValueError(f"generator must be an int seed or a torch.Generator, got {type(generator).__name__}")
        self._generator_arg = generator
        self._generators: Dict[str, torch.Generator] = {}
        self._params: Dict[str, Tensor] = {}

    def extra_repr(self) -> str:
        return (f"p={self.p}, scale={self.scale}, ratio={self.ratio}, same_on_batch={self.same_on_batch}, "
                f"ratio_sampling={self.ratio_sampling!r}, placement={self.placement!r}")

    @classmethod
    def stacked(cls, **kwargs: object) -> "StackedModalityAugment":
        """The same transform on one stacked ``(2B, C, H, W)`` tensor (visible first), as a kornia
        augmentation for ``kornia.augmentation.AugmentationSequential``."""
        from mag_mmt.augment_kornia import StackedModalityAugment

        return StackedModalityAugment(**kwargs)  # type: ignore[arg-type]

    def generator_for(self, device: torch.device) -> Optional[torch.Generator]:
        """The generator used on ``device`` (None: torch's global RNG)."""
        g = self._generator_arg
        if g is None:
            return None
        if isinstance(g, torch.Generator):
            if g.device.type != device.type:
                raise ValueError(f"the generator lives on {g.device} but the input is on {device}")
            return g
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(g)
        return self._generators[key]

    def forward_parameters(
        self,
        visible: Union[Tensor, Sequence[int]],
        thermal: Optional[Tensor] = None,
        visible_labels: Optional[Tensor] = None,
        thermal_labels: Optional[Tensor] = None,
        *,
        device: Optional[Union[torch.device, str]] = None,
    ) -> Dict[str, Tensor]:
        """Draw the parameters of one call without applying them; pass them back as ``params=``.

        ``forward_parameters(visible, thermal, visible_labels=None, thermal_labels=None)`` draws
        for these inputs, on their device (with labels: partners too). Kornia's form
        ``forward_parameters(batch_shape, device=None)`` draws for aligned pairs of a
        ``(B, C, H, W)`` shape, on ``device`` (default: the generator's, else the CPU).
        Uses the module's generator exactly as a call does.
        """
        if not isinstance(visible, Tensor):
            shape = tuple(int(v) for v in visible)
            if thermal is not None or visible_labels is not None or thermal_labels is not None or len(shape) != 4:
                raise ValueError(f"forward_parameters takes tensors or one (B, C, H, W) batch shape, got {visible!r}")
            gen = self._generator_arg
            dev = torch.device(device if device is not None else
                               gen.device if isinstance(gen, torch.Generator) else "cpu")
            return self._sample(shape[0], shape[2], shape[3], dev, self.generator_for(dev), self.same_on_batch)
        if thermal is None:
            raise ValueError("forward_parameters(visible, thermal): give the thermal batch too")
        if (visible_labels is None) != (thermal_labels is None):
            raise ValueError("give both visible_labels and thermal_labels, or neither")
        labelled = visible_labels is not None
        _check_images(visible, thermal, same_batch=not labelled)
        height, width = visible.shape[-2:]
        g = self.generator_for(visible.device)
        params = self._sample(visible.shape[0], height, width, visible.device, g, self.same_on_batch)
        if not labelled:
            return params
        assert visible_labels is not None and thermal_labels is not None
        for name, lab, n in (("visible_labels", visible_labels, visible.shape[0]),
                             ("thermal_labels", thermal_labels, thermal.shape[0])):
            check_tensor(lab, name, 1)
            if lab.shape[0] != n:
                raise ValueError(f"{name} must have one label per image ({n}), got {lab.shape[0]}")
        check_same_device(visible=visible, visible_labels=visible_labels, thermal_labels=thermal_labels)
        vp, tp = match_partners(visible_labels, thermal_labels, generator=g)
        own = self._sample(thermal.shape[0], height, width, visible.device, g, self.same_on_batch)
        # a thermal image in a mutual pair reuses its partner's draw: the same box both ways
        src = tp.clamp(min=0)
        mutual = (tp >= 0) & (vp.index_select(0, src) == torch.arange(tp.shape[0], device=tp.device)) \
            if visible.shape[0] else torch.zeros_like(tp, dtype=torch.bool)
        if visible.shape[0]:
            params["thermal_boxes"] = torch.where(mutual.unsqueeze(1), params["boxes"].index_select(0, src), own["boxes"])
            params["thermal_batch_prob"] = torch.where(mutual, params["batch_prob"].index_select(0, src), own["batch_prob"])
        else:
            params["thermal_boxes"], params["thermal_batch_prob"] = own["boxes"], own["batch_prob"]
        params["visible_partner"], params["thermal_partner"] = vp, tp
        return params

    def forward(
        self,
        visible: Tensor,
        thermal: Tensor,
        visible_labels: Optional[Tensor] = None,
        thermal_labels: Optional[Tensor] = None,
        params: Optional[Dict[str, Tensor]] = None,
    ) -> Tuple[Tensor, Tensor]:
        if params is None:
            params = self.forward_parameters(visible, thermal, visible_labels, thermal_labels)
        elif "boxes" not in params or "batch_prob" not in params:
            raise ValueError("params must come from ModalityAugment (keys 'boxes' and 'batch_prob')")
        elif (visible_labels is not None or thermal_labels is not None) and "visible_partner" not in params:
            raise UserError("these params were drawn without labels, so they pair images by index; draw them "
                            "with forward_parameters(visible, thermal, visible_labels, thermal_labels)")
        self._params = params
        if "visible_partner" in params:
            return modality_exchange(
                visible, thermal, params["boxes"], params["batch_prob"],
                thermal_boxes=params["thermal_boxes"], thermal_apply=params["thermal_batch_prob"],
                visible_partner=params["visible_partner"], thermal_partner=params["thermal_partner"],
            )
        return modality_exchange(visible, thermal, params["boxes"], params["batch_prob"])


def __getattr__(name: str) -> Any:
    if name == "StackedModalityAugment":  # the kornia form: kornia is imported only when asked for
        from mag_mmt.augment_kornia import StackedModalityAugment

        return StackedModalityAugment
    raise AttributeError(f"module 'mag_mmt.augment' has no attribute {name!r}")
