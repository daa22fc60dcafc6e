"""ResNet-18 (He et al., 2016) in plain PyTorch: the page classifier of the MusicScore pipeline.

The layout of torchvision's ``resnet18`` (a 7x7 stride-2 stem, a 3x3 stride-2 max pool, four
stages of two basic blocks, global average pooling, one linear layer), for grayscale input and
with the stage widths configurable: ``(64, 128, 256, 512)`` is ResNet-18 itself; the tests use
narrower ones. :meth:`ResNet.features` gives the pooled penultimate features, which ``umt eval
fid`` can use as its embedding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a residual connection (projected when the shape changes)."""

    def __init__(self, channels_in: int, channels_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.shortcut = nn.Identity()
        if stride != 1 or channels_in != channels_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(channels_in, channels_out, 1, stride, bias=False), nn.BatchNorm2d(channels_out)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """``x [B, C, H, W]`` -> logits ``[B, classes]``; two blocks per stage is ResNet-18."""

    def __init__(
        self,
        classes: int,
        in_channels: int = 1,
        widths: Sequence[int] = (64, 128, 256, 512),
        blocks_per_stage: int = 2,
    ) -> None:
        super().__init__()
        stem = widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 7, 2, 3, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
        )
        stages, channels = [], stem
        for index, width in enumerate(widths):
            blocks = []
            for block in range(blocks_per_stage):
                stride = 2 if index > 0 and block == 0 else 1
                blocks.append(BasicBlock(channels, width, stride))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(channels, classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: Tensor) -> Tensor:
        """``x [B, C, H, W]`` -> the pooled features before the last layer ``[B, widths[-1]]``."""
        return self.stages(self.stem(x)).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))
