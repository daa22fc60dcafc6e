"""The Inception-v3 of FID (Szegedy et al., 2016; Heusel et al., 2017) in plain PyTorch.

The network TensorFlow's FID used and pytorch-fid ports: torchvision's Inception-v3 layout with the
FID variants of its mixed blocks (average pools that do not count the padding, and a max pool in
the last block's pooling branch). Its weights come from the user: pytorch-fid's
``pt_inception-2015-12-05-6726825d.pth`` (a state dict in torchvision's names, read with
``torch.load(weights_only=True)``; the 1008-way classifier in it is not used). :func:`fid_features`
gives the 2048 pooled features of images as pytorch-fid computes them: RGB in [0, 1], resized to
299 x 299 (bilinear), scaled to [-1, 1]. Submodules keep torchvision's names so the file loads as
it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from umt.errors import CheckpointError

FEATURES = 2048
INPUT_SIZE = 299


class BasicConv2d(nn.Module):
    """Convolution without bias, batch norm (eps 0.001), ReLU."""

    def __init__(self, channels_in: int, channels_out: int, kernel, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels_in, channels_out, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(channels_out, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _average_pool(x: Tensor) -> Tensor:
    """FID's 3x3 average pool: the padding is not counted (torchvision's counts it)."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class MixedA(nn.Module):
    """35 x 35 block: 1x1, 5x5, double 3x3 and pooled branches."""

    def __init__(self, channels_in: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(channels_in, 64, 1)
        self.branch5x5_1 = BasicConv2d(channels_in, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(channels_in, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(channels_in, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                double,
                self.branch_pool(_average_pool(x)),
            ],
            1,
        )


class ReductionB(nn.Module):
    """35 -> 17 reduction: strided 3x3, strided double 3x3, max pool."""

    def __init__(self, channels_in: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(channels_in, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(channels_in, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), double, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class MixedC(nn.Module):
    """17 x 17 block with factorised 7x7 convolutions (1x7 then 7x1)."""

    def __init__(self, channels_in: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(channels_in, 192, 1)
        self.branch7x7_1 = BasicConv2d(channels_in, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(channels_in, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(channels_in, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        single = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        double = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            double = layer(double)
        return torch.cat([self.branch1x1(x), single, double, self.branch_pool(_average_pool(x))], 1)


class ReductionD(nn.Module):
    """17 -> 8 reduction: 1x1 then strided 3x3; 1x1, 1x7, 7x1, strided 3x3; max pool."""

    def __init__(self, channels_in: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(channels_in, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(channels_in, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        seven = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            seven = layer(seven)
        return torch.cat(
            [self.branch3x3_2(self.branch3x3_1(x)), seven, F.max_pool2d(x, kernel_size=3, stride=2)], 1
        )


class MixedE(nn.Module):
    """8 x 8 block with split 1x3 / 3x1 outputs; the last one pools with a max (FID's variant)."""

    def __init__(self, channels_in: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(channels_in, 320, 1)
        self.branch3x3_1 = BasicConv2d(channels_in, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(channels_in, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(channels_in, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        single = self.branch3x3_1(x)
        single = torch.cat([self.branch3x3_2a(single), self.branch3x3_2b(single)], 1)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        double = torch.cat([self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double)], 1)
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _average_pool(x)
        return torch.cat([self.branch1x1(x), single, double, self.branch_pool(pooled)], 1)


class FidInception(nn.Module):
    """Images ``[B, 3, 299, 299]`` in [-1, 1] -> pooled features ``[B, 2048]``."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = MixedA(192, 32)
        self.Mixed_5c = MixedA(256, 64)
        self.Mixed_5d = MixedA(288, 64)
        self.Mixed_6a = ReductionB(288)
        self.Mixed_6b = MixedC(768, 128)
        self.Mixed_6c = MixedC(768, 160)
        self.Mixed_6d = MixedC(768, 160)
        self.Mixed_6e = MixedC(768, 192)
        self.Mixed_7a = ReductionD(768)
        self.Mixed_7b = MixedE(1280, max_pool=False)
        self.Mixed_7c = MixedE(2048, max_pool=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean(dim=(2, 3))


def load_fid_inception(path: str | Path) -> FidInception:
    """pytorch-fid's weights file (a state dict in torchvision's names) as a :class:`FidInception`
    in eval mode; :class:`CheckpointError` naming the file otherwise (nothing is unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("no such Inception weights file", path)
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError (code refused), RuntimeError (not a torch file), ...
        raise CheckpointError(f"not a readable weights file ({type(error).__name__})", path) from None
    if not isinstance(state, dict):
        raise CheckpointError("not a state dict", path)
    model = FidInception()
    state = {k: v for k, v in state.items() if not k.startswith(("fc.", "AuxLogits."))}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise CheckpointError(f"not FID Inception-v3 weights ({first})", path) from None
    return model.eval()


@torch.no_grad()
def fid_features(model: FidInception, pages: Sequence, batch_size: int = 16) -> Tensor:
    """Grayscale pages ``uint8 [H, W]`` (each its own size) -> features ``[N, 2048]``: each page
    as RGB in [0, 1] resized to 299 x 299 (bilinear, as pytorch-fid resizes), then scaled to [-1, 1]."""
    inputs = []
    for page in pages:
        x = torch.as_tensor(page, dtype=torch.float32)[None, None].div(255.0).expand(1, 3, -1, -1)
        inputs.append(F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False))
    out = [
        model(torch.cat(inputs[start : start + batch_size]) * 2 - 1)
        for start in range(0, len(inputs), batch_size)
    ]
    return torch.cat(out) if out else torch.zeros(0, FEATURES)
