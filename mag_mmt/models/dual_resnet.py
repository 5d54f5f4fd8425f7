"""AGW's two-path ResNet-50 (Ye et al., ``mangye16/Cross-Modal-Re-ID-baseline``, ``model.py``
``embed_net``), built on torchvision's ``resnet50``.

torchvision's ResNet-50 is cut into the five units every model here has (see
:mod:`mag_mmt.models.heads` for the share points):

=========  ==============================================  ===============  ======
unit       torchvision modules                             channels         stride
=========  ==============================================  ===============  ======
stem       ``conv1``, ``bn1``, ``relu``, ``maxpool``       64                  4
stage 1    ``layer1`` (3 bottlenecks)                      256                 4
stage 2    ``layer2`` (4), non-local after the last 2      512                 8
stage 3    ``layer3`` (6), non-local after the last 3      1024               16
stage 4    ``layer4`` (3), *last stride 1*                 2048               16
=========  ==============================================  ===============  ======

As in AGW: only the stem is modality-specific by default (``share_point=1``; AGW's
``visible_module`` / ``thermal_module``), the last stage keeps stride 1 (``layer4[0]``'s 3x3
conv and downsample; no dilation), non-local blocks follow the last ``non_local[k]`` blocks of
stage ``k + 1`` (AGW's default ``[0, 2, 3, 0]``; ``non_local=False`` for none), GeM pooling
with ``p = 3``, then BNNeck and a bias-free classifier. AGW's ``Non_local`` computes its inner
width as ``reduc_ratio // reduc_ratio``, i.e. **1 channel**; :class:`NonLocal` keeps that as the
default (``non_local_channels``). Its output ``BatchNorm`` starts at zero, so a fresh block is
the identity.

AGW's test mode returns both the pooled and the BNNeck feature, L2-normalised; here eval-mode
``forward`` returns one of them, chosen by ``test_feature`` (``"bn"`` or ``"pool"``, settable
later as ``model.eval_feature``), unnormalised (normalise in the evaluation).

Nothing is downloaded: ``pretrained_path`` names a local file with torchvision's ResNet-50
``state_dict`` (e.g. ``resnet50-0676ba61.pth`` or ``resnet50-11ad3fa6.pth``), loaded with
``weights_only=True`` into both paths; the classifier ``fc.*`` is ignored, the non-local blocks
keep their fresh initialisation.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Mapping, Sequence

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

from ..errors import UserError
from .heads import DualPathNet
from .weights import read_state_dict_file

AGW_NON_LOCAL = (0, 2, 3, 0)
RESNET50_LAYERS = (3, 4, 6, 3)


class NonLocal(nn.Module):
    """AGW's dot-product non-local block: ``z = x + BN(W(softmax-free attention))``.

    ``theta``, ``phi``, ``g`` are 1x1 convs to ``inter_channels`` (AGW: 1); the affinity
    ``theta^T phi`` is divided by the number of positions ``N = h * w``; ``W`` (1x1 conv + BN,
    BN weight and bias zero-initialised) maps back to ``in_channels``.

    Shapes: ``(B, C, h, w) -> (B, C, h, w)``.

    Example::

        >>> block = NonLocal(8)
        >>> x = torch.randn(2, 8, 4, 3)
        >>> torch.equal(block(x), x)   # fresh block: the residual branch is zero
        True
    """

    def __init__(self, in_channels: int, inter_channels: int = 1) -> None:
        super().__init__()
        if in_channels < 1 or inter_channels < 1:
            raise UserError(f"non-local channels must be >= 1, got in={in_channels}, inter={inter_channels}")
        self.inter_channels = int(inter_channels)
        self.g = nn.Conv2d(in_channels, inter_channels, 1)
        self.theta = nn.Conv2d(in_channels, inter_channels, 1)
        self.phi = nn.Conv2d(in_channels, inter_channels, 1)
        self.W = nn.Sequential(nn.Conv2d(inter_channels, in_channels, 1), nn.BatchNorm2d(in_channels))
        nn.init.zeros_(self.W[1].weight)
        nn.init.zeros_(self.W[1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        g = self.g(x).flatten(2).transpose(1, 2)          # (B, N, c)
        theta = self.theta(x).flatten(2).transpose(1, 2)  # (B, N, c)
        phi = self.phi(x).flatten(2)                      # (B, c, N)
        y = torch.matmul(torch.matmul(theta, phi) / (h * w), g)  # (B, N, c)
        y = y.transpose(1, 2).reshape(b, self.inter_channels, h, w)
        return x + self.W(y)


class ResNetStage(nn.Module):
    """A torchvision ``layerK`` (``blocks``) with non-local blocks after its last ``n`` blocks.

    ``(B, C_in, H, W) -> (B, C_out, H / s, W / s)``; ``blocks.*`` keeps torchvision's names.
    """

    def __init__(self, blocks: nn.Sequential, num_non_local: int = 0, inter_channels: int = 1) -> None:
        super().__init__()
        n = len(blocks)
        if not 0 <= num_non_local <= n:
            raise UserError(f"a stage of {n} blocks takes 0..{n} non-local blocks, got {num_non_local}")
        self.blocks = blocks
        out_channels = blocks[-1].conv3.out_channels
        self.non_local = nn.ModuleList(NonLocal(out_channels, inter_channels) for _ in range(num_non_local))
        self.non_local_after = list(range(n - num_non_local, n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nl = iter(self.non_local)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.non_local_after:
                x = next(nl)(x)
        return x


def _resnet_units(backbone: ResNet, non_local: Sequence[int], inter_channels: int) -> list[nn.Module]:
    stem = nn.Sequential(OrderedDict(conv1=backbone.conv1, bn1=backbone.bn1, relu=backbone.relu, maxpool=backbone.maxpool))
    layers = (backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4)
    return [stem, *(ResNetStage(layer, n, inter_channels) for layer, n in zip(layers, non_local))]


class DualResNet50(DualPathNet):
    """AGW's two-path ResNet-50 with the AGW forward contract (see the module table).

    Args:
        num_classes: identity classes.
        share_point: number of modality-specific units or ``"F1"``..``"F5"``; default ``1``
            (AGW: the stem specific, stages 1-4 shared).
        pretrained_path: local torchvision ResNet-50 ``state_dict`` file for both paths;
            ``None`` = random initialisation. Never downloads.
        img_size: inputs are resized (bilinear) to this size if they differ; ``None``
            (default) keeps them (AGW trains on 288 x 144 crops).
        non_local: non-local blocks per stage (AGW's ``non_layers``; default ``(0, 2, 3, 0)``),
            ``True`` for that default, ``False`` for none.
        non_local_channels: the blocks' inner width (AGW's code: 1).
        last_stride: stride of stage 4 (AGW: 1; torchvision: 2).
        pool_p: GeM power (AGW: 3; 1 = average pooling, AGW's ``gm_pool='off'``).
        test_feature: ``"bn"`` (BNNeck feature, default) or ``"pool"``: what eval-mode
            ``forward`` returns; ``eval_feature`` is the same switch under the other models' name.
        layers, width_per_group: torchvision ``ResNet`` arguments (defaults: ResNet-50); a
            smaller ``width_per_group`` makes a cheap model of the same shapes for tests.

    Shapes: ``forward(x1 (B1, 3, H, W), x2 (B2, 3, H, W))`` -> training
    ``(feat (B1+B2, 2048), logits (B1+B2, num_classes))``, eval ``(B1+B2, 2048)``;
    ``forward_feature_map`` gives ``(B, 2048, ceil(H/16), ceil(W/16))`` with last stride 1.

    Example::

        >>> from mag_mmt.models.dual_resnet import DualResNet50
        >>> m = DualResNet50(10, width_per_group=8)
        >>> feat, logits = m(torch.randn(2, 3, 64, 32), torch.randn(2, 3, 64, 32))
        >>> feat.shape, logits.shape, m.forward_feature_map(torch.randn(1, 3, 64, 32), None, modal=1).shape
        (torch.Size([4, 2048]), torch.Size([4, 10]), torch.Size([1, 2048, 4, 2]))
    """

    def __init__(
        self,
        num_classes: int,
        share_point: str | int = 1,
        pretrained_path: str | os.PathLike | None = None,
        img_size: int | tuple[int, int] | None = None,
        *,
        non_local: bool | Sequence[int] = AGW_NON_LOCAL,
        non_local_channels: int = 1,
        last_stride: int = 1,
        pool_p: float = 3.0,
        test_feature: str | None = None,
        eval_feature: str | None = None,
        layers: Sequence[int] = RESNET50_LAYERS,
        width_per_group: int = 64,
    ) -> None:
        if None not in (test_feature, eval_feature) and test_feature != eval_feature:
            raise UserError(f"test_feature={test_feature!r} and eval_feature={eval_feature!r} disagree; give one")
        feature = test_feature or eval_feature or "bn"
        if feature not in ("bn", "pool"):
            raise UserError(f"test_feature must be 'bn' or 'pool', got {feature!r}")
        if non_local is True:
            non_local = AGW_NON_LOCAL
        elif non_local is False:
            non_local = (0, 0, 0, 0)
        non_local = tuple(int(n) for n in non_local)
        if len(non_local) != 4 or len(layers) != 4:
            raise UserError(f"non_local and layers need 4 entries (one per stage), got {non_local} and {tuple(layers)}")
        if last_stride not in (1, 2):
            raise UserError(f"last_stride must be 1 (AGW) or 2 (torchvision), got {last_stride}")
        # with the defaults this is exactly torchvision's ``resnet50(weights=None)``
        backbone = ResNet(Bottleneck, list(layers), width_per_group=int(width_per_group))
        if last_stride == 1:
            first = backbone.layer4[0]
            first.conv2.stride = (1, 1)
            first.downsample[0].stride = (1, 1)
        if isinstance(img_size, int):
            img_size = (img_size, img_size)
        super().__init__(
            _resnet_units(backbone, non_local, non_local_channels),
            num_classes=num_classes,
            feature_dim=2048,
            share_point=share_point,
            pool_p=pool_p,
            eval_feature=feature,
            input_size=img_size,
        )
        self.non_local_layers = non_local
        self.last_stride = last_stride
        if pretrained_path is not None:
            self.load_torchvision_state_dict(read_state_dict_file(pretrained_path, "ResNet-50"), source=repr(os.fspath(pretrained_path)))

    @property
    def test_feature(self) -> str:
        """What eval-mode ``forward`` returns: ``"bn"`` or ``"pool"`` (alias of ``eval_feature``)."""
        return self.eval_feature

    @test_feature.setter
    def test_feature(self, value: str) -> None:
        if value not in ("bn", "pool"):
            raise UserError(f"test_feature must be 'bn' or 'pool', got {value!r}")
        self.eval_feature = value

    def split_torchvision_state_dict(self, state_dict: Mapping[str, torch.Tensor],
                                     source: str = "state_dict") -> list[dict[str, torch.Tensor]]:
        """Cut a torchvision ResNet-50 ``state_dict`` into one state dict per unit (``fc.*``
        ignored; non-local entries are not expected). Raises :class:`UserError` listing missing,
        unexpected and mis-shaped entries."""
        template = self.path(0)
        per_unit: list[dict[str, torch.Tensor]] = [{} for _ in template]
        unexpected: list[str] = []
        for key, value in state_dict.items():
            head, _, rest = key.partition(".")
            if head == "fc":
                continue
            if head in ("conv1", "bn1"):
                per_unit[0][key] = value
            elif head in ("layer1", "layer2", "layer3", "layer4"):
                per_unit[int(head[-1])][f"blocks.{rest}"] = value
            else:
                unexpected.append(key)
        missing, mismatched = [], []
        for u, unit in enumerate(template):
            expected = {k: v for k, v in unit.state_dict().items() if not k.startswith("non_local.")}
            name = (lambda k: k) if u == 0 else (lambda k, u=u: f"layer{u}.{k[len('blocks.'):]}")
            for k, tensor in expected.items():
                if k not in per_unit[u]:
                    missing.append(name(k))
                elif per_unit[u][k].shape != tensor.shape:
                    mismatched.append(f"{name(k)}: file {tuple(per_unit[u][k].shape)} vs model {tuple(tensor.shape)}")
            unexpected += [name(k) for k in per_unit[u] if k not in expected]
        if missing or unexpected or mismatched:
            parts = []
            for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
                if items:
                    shown = ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "")
                    parts.append(f"{title}: {shown}")
            raise UserError(f"{source} is not a torchvision ResNet-50 state_dict for this model; " + "; ".join(parts))
        return per_unit

    def load_torchvision_state_dict(self, state_dict: Mapping[str, torch.Tensor], source: str = "state_dict") -> None:
        """Load a torchvision ResNet-50 ``state_dict`` into both paths (non-local blocks and head kept)."""
        per_unit = self.split_torchvision_state_dict(state_dict, source)
        for modality in (0, 1):
            for unit, sd in zip(self.path(modality), per_unit):
                unit.load_state_dict(sd, strict=False)
