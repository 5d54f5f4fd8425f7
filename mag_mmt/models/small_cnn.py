"""A small dual-path CNN with the same contract as :class:`~mag_mmt.models.dual_swin.DualPathSwin`.

Meant for CPU runs (the ``mag-mmt demo``, tests) on small images such as 64 x 32. Five
units like the Swin model, so the share points mean the same thing:

=========  ==============================================  ======
unit       layers                                          stride
=========  ==============================================  ======
stem       conv3x3(3 -> w0, stride 2), BN, ReLU               2
stage 1    residual block (w0 -> w1)                          2
stage 2    residual block (w1 -> w2, stride 2)                4
stage 3    residual block (w2 -> w3, stride 2)                8
stage 4    residual block (w3 -> w4, stride 2)               16
=========  ==============================================  ======

A residual block is conv3x3-BN-ReLU-conv3x3-BN plus a (1x1 conv + BN when the shape
changes) shortcut, then ReLU. Pooling is GeM with p = 3 (as AGW), then BNNeck and classifier.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .heads import DualPathNet


class ResidualBlock(nn.Module):
    """Basic residual block: ``(B, c_in, H, W)`` -> ``(B, c_out, H / stride, W / stride)``."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class SmallCNN(DualPathNet):
    """Small dual-path residual CNN with the AGW forward contract.

    Args:
        num_classes: identity classes.
        share_point: ``"F1"``..``"F5"`` or the number of specific units (default ``"F3"``:
            stem and stages 1-2 specific).
        widths: channels of the stem and the four stages (5 ints); feature dim = ``widths[-1]``.
        img_size: inputs are resized to this size if they differ; ``None`` (default) keeps them.
        pool_p: GeM power (default 3, AGW's; 1 = average).
        eval_feature: ``"bn"`` or ``"pool"``.

    Shapes: ``forward(x1 (B1, 3, H, W), x2 (B2, 3, H, W))`` -> training
    ``(feat (B1+B2, widths[-1]), logits (B1+B2, num_classes))``, eval ``(B1+B2, widths[-1])``.

    Example::

        >>> from mag_mmt.models.small_cnn import SmallCNN
        >>> m = SmallCNN(10)
        >>> feat, logits = m(torch.randn(2, 3, 64, 32), torch.randn(2, 3, 64, 32))
        >>> feat.shape, logits.shape
        (torch.Size([4, 256]), torch.Size([4, 10]))
    """

    def __init__(
        self,
        num_classes: int,
        share_point: str | int = "F3",
        widths: Sequence[int] = (32, 32, 64, 128, 256),
        img_size: int | tuple[int, int] | None = None,
        pool_p: float = 3.0,
        eval_feature: str = "bn",
    ) -> None:
        widths = [int(w) for w in widths]
        if len(widths) != 5 or min(widths) < 1:
            raise ValueError(f"widths must be 5 positive ints (stem + 4 stages), got {widths}")
        stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, 2, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        strides = (1, 2, 2, 2)
        stages = [ResidualBlock(widths[i], widths[i + 1], strides[i]) for i in range(4)]
        for m in [stem, *stages]:
            for layer in m.modules():
                if isinstance(layer, nn.Conv2d):
                    nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
        if isinstance(img_size, int):
            img_size = (img_size, img_size)
        super().__init__(
            [stem, *stages],
            num_classes=num_classes,
            feature_dim=widths[-1],
            share_point=share_point,
            pool_p=pool_p,
            eval_feature=eval_feature,
            input_size=img_size,
        )
        self.widths = widths
