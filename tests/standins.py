"""Tiny stand-ins for the models of AGW, CAJ and TSLFN, written here from their forward
contracts (not their code), so the adapters can be tested end to end on CPU in milliseconds.

What each stand-in keeps exactly is the *contract* its repo's ``train.py`` relies on:
argument order, ``modal`` switch, row order of the outputs, what training and evaluation
mode return, and which parameters belong to which modality branch. The layers are tiny.

* AGW (mangye16/Cross-Modal-Re-ID-baseline, ``model.py`` ``embed_net``):
  ``forward(x1, x2, modal=0)``; modal 0 runs ``visible_module(x1)`` and
  ``thermal_module(x2)`` and concatenates the rows (visible first), modal 1 only the visible
  branch on ``x1``, modal 2 only the thermal branch on ``x2``; then a shared trunk, GeM
  (p = 3) or average pooling to ``x_pool``, a ``BatchNorm1d`` bottleneck without bias
  learning and a bias-free linear classifier. Training returns ``(x_pool, logits)``,
  evaluation ``(l2norm(x_pool), l2norm(bottleneck(x_pool)))``.
* CAJ (same repo, ``ICCV21_CAJ/model.py``): the same ``embed_net`` contract; its
  ``train_ext.py`` calls ``net(torch.cat((input10, input11)), input2)``, so the visible
  branch sees both visible views and the output rows are ``[view 0 | view 1 | thermal]``.
* TSLFN (98zyx/Hetero-center-loss-for-cross-modality-person-re-id, ``model.py``
  ``embed_net(low_dim, class_num, drop, arch)``): two complete streams (``visible_net``,
  ``thermal_net``) each ending in 6 horizontal stripes pooled from the last feature map,
  then per part a ``Linear + BatchNorm1d`` embedding (``feature1..6``) and a
  ``LeakyReLU(0.1) [+ Dropout] + Linear`` classifier (``classifier1..6``). Training returns
  ``(6 logits, 6 L2-normalised part embeddings)``, each ``(2B, .)`` with visible rows first;
  evaluation returns ``(cat of the 6 L2-normalised pooled stripes, cat of the 6
  L2-normalised embeddings)``, ``(B, 6 * pool_dim)`` and ``(B, 6 * low_dim)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AGWStandIn", "CAJStandIn", "TSLFNStandIn", "l2norm"]


def l2norm(x: torch.Tensor) -> torch.Tensor:
    """Row-wise L2 normalisation (the repos' ``Normalize(2)``)."""
    return x / x.pow(2).sum(1, keepdim=True).sqrt()


def _stem(channels: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, channels, 3, stride=2, padding=1), nn.ReLU())


class AGWStandIn(nn.Module):
    """AGW ``embed_net`` contract with a 2-conv trunk; ``dim`` plays the role of 2048."""

    def __init__(self, class_num: int, dim: int = 8, gm_pool: bool = True) -> None:
        super().__init__()
        self.visible_module = _stem(dim)
        self.thermal_module = _stem(dim)
        self.base_resnet = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.ReLU())
        self.gm_pool = gm_pool
        self.bottleneck = nn.BatchNorm1d(dim)
        self.bottleneck.bias.requires_grad_(False)
        self.classifier = nn.Linear(dim, class_num, bias=False)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, modal: int = 0):
        if modal == 0:
            x = torch.cat((self.visible_module(x1), self.thermal_module(x2)), 0)
        elif modal == 1:
            x = self.visible_module(x1)
        elif modal == 2:
            x = self.thermal_module(x2)
        else:
            raise ValueError(f"modal must be 0, 1 or 2, got {modal}")
        x = self.base_resnet(x)
        if self.gm_pool:
            x_pool = (x.flatten(2).pow(3).mean(-1) + 1e-12).pow(1.0 / 3.0)
        else:
            x_pool = x.mean(dim=(2, 3))
        feat = self.bottleneck(x_pool)
        if self.training:
            return x_pool, self.classifier(feat)
        return l2norm(x_pool), l2norm(feat)


#: ICCV21_CAJ/model.py keeps AGW's embed_net contract; only the batch (three blocks) differs.
CAJStandIn = AGWStandIn


class _Stream(nn.Module):
    """One TSLFN stream: image -> (B, C, parts) stripe features."""

    def __init__(self, channels: int, parts: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, channels, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
        )
        self.parts = parts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(x)
        height = x.size(2)
        if height < self.parts:
            raise ValueError(f"feature map height {height} < {self.parts} parts")
        stride = height // self.parts
        kernel = height - stride * (self.parts - 1)  # the last stripe takes the remainder
        x = F.avg_pool2d(x, kernel_size=(kernel, x.size(3)), stride=(stride, x.size(3)))
        return x.view(x.size(0), x.size(1), x.size(2))


class TSLFNStandIn(nn.Module):
    """TSLFN ``embed_net(low_dim, class_num, drop)`` contract; ``pool_dim`` plays 2048."""

    def __init__(
        self, low_dim: int, class_num: int, drop: float = 0.0, pool_dim: int = 8, parts: int = 6
    ) -> None:
        super().__init__()
        self.parts = parts
        self.visible_net = _Stream(pool_dim, parts)
        self.thermal_net = _Stream(pool_dim, parts)
        self.features = nn.ModuleList(
            nn.Sequential(nn.Linear(pool_dim, low_dim), nn.BatchNorm1d(low_dim)) for _ in range(parts)
        )
        self.classifiers = nn.ModuleList(
            nn.Sequential(
                nn.LeakyReLU(0.1),
                *([nn.Dropout(drop)] if drop else []),
                nn.Linear(low_dim, class_num),
            )
            for _ in range(parts)
        )

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, modal: int = 0):
        if modal == 0:
            x = torch.cat((self.visible_net(x1), self.thermal_net(x2)), 0)
        elif modal == 1:
            x = self.visible_net(x1)
        elif modal == 2:
            x = self.thermal_net(x2)
        else:
            raise ValueError(f"modal must be 0, 1 or 2, got {modal}")
        stripes = [x[:, :, k] for k in range(self.parts)]  # each (rows, pool_dim)
        embeds = [f(s) for f, s in zip(self.features, stripes)]
        logits = tuple(c(e) for c, e in zip(self.classifiers, embeds))
        if self.training:
            return logits, tuple(l2norm(e) for e in embeds)
        return (
            torch.cat([l2norm(s) for s in stripes], 1),
            torch.cat([l2norm(e) for e in embeds], 1),
        )
