"""The FastDVDNet network (Tassano, Delon, Veit, CVPR 2020), laid out like the published weights.

Two identical three-frame denoising blocks: the first runs on frames (0,1,2), (1,2,3), (2,3,4)
of a five-frame window, the second on those three results. Module names match the published
model.pth (after its "module." prefix), so its state dict loads as it is.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv(cin: int, cout: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, padding=1, stride=stride, groups=groups, bias=False)


class CvBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.convblock = nn.Sequential(
            _conv(cin, cout), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            _conv(cout, cout), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convblock(x)


class InputCvBlock(nn.Module):
    """Per-frame grouped convolution (each frame with its noise map), then a joint one."""

    def __init__(self, frames: int, cout: int, interm: int = 30) -> None:
        super().__init__()
        self.convblock = nn.Sequential(
            _conv(frames * 4, frames * interm, groups=frames), nn.BatchNorm2d(frames * interm), nn.ReLU(inplace=True),
            _conv(frames * interm, cout), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convblock(x)


class DownBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.convblock = nn.Sequential(
            _conv(cin, cout, stride=2), nn.BatchNorm2d(cout), nn.ReLU(inplace=True), CvBlock(cout, cout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convblock(x)


class UpBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.convblock = nn.Sequential(CvBlock(cin, cin), _conv(cin, cout * 4), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convblock(x)


class OutputCvBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.convblock = nn.Sequential(_conv(cin, cin), nn.BatchNorm2d(cin), nn.ReLU(inplace=True), _conv(cin, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convblock(x)


class DenBlock(nn.Module):
    """A two-scale U-Net that denoises the middle of three frames (residual output)."""

    def __init__(self) -> None:
        super().__init__()
        self.inc = InputCvBlock(frames=3, cout=32)
        self.downc0 = DownBlock(32, 64)
        self.downc1 = DownBlock(64, 128)
        self.upc2 = UpBlock(128, 64)
        self.upc1 = UpBlock(64, 32)
        self.outc = OutputCvBlock(32, 3)

    def forward(self, in0: torch.Tensor, in1: torch.Tensor, in2: torch.Tensor, noise_map: torch.Tensor) -> torch.Tensor:
        x0 = self.inc(torch.cat((in0, noise_map, in1, noise_map, in2, noise_map), dim=1))
        x1 = self.downc0(x0)
        x2 = self.upc2(self.downc1(x1))
        x1 = self.upc1(x1 + x2)
        return in1 - self.outc(x0 + x1)


class FastDVDnet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.temp1 = DenBlock()
        self.temp2 = DenBlock()

    def forward(self, x: torch.Tensor, noise_map: torch.Tensor) -> torch.Tensor:
        """x: (N, 15, H, W), five RGB frames; noise_map: (N, 1, H, W). H and W multiples of 4."""
        f = [x[:, 3 * m : 3 * m + 3] for m in range(5)]
        x20 = self.temp1(f[0], f[1], f[2], noise_map)
        x21 = self.temp1(f[1], f[2], f[3], noise_map)
        x22 = self.temp1(f[2], f[3], f[4], noise_map)
        return self.temp2(x20, x21, x22, noise_map)
