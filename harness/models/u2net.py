"""U^2-Net and U^2-Netp (Qin et al., 2020), written after ``model/u2net.py`` of xuebinqin/U-2-Net.

The network is a U-Net whose every stage is itself a small U-Net, a *residual U-block* (RSU).
All RSU variants of the paper (RSU-7 .. RSU-4 and the dilated, resolution-keeping RSU-4F) are one
class here, :class:`RSU`, parameterised by height; the official code spells each out separately.
Attribute names follow the official classes exactly (``stage1.rebnconv2d.conv_s1.weight`` ...), so
the published ``u2net.pth`` / ``u2netp.pth`` state_dicts (plain, no ``module.`` prefix) load with
``strict=True``. The upsampling follows the repository's current revision, which resizes to the
skip tensor's size (works for any input size) rather than by a fixed factor of 2.

:class:`NestedUNet` (the six-stage encoder, five-stage decoder and six side convolutions) is shared
with ISNet (:mod:`.isnet`), which only changes the stem and the head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register

SOURCE = "https://github.com/xuebinqin/U-2-Net"


def upsample_like(src: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Bilinear resize (half-pixel centres) of ``src`` to ``ref``'s spatial size, as the official ``_upsample_like``."""
    return F.interpolate(src, size=ref.shape[2:], mode="bilinear", align_corners=False)


def downsample(x: torch.Tensor) -> torch.Tensor:
    """2x2 max-pool rounding up, so odd sizes keep their last row/column (official ``ceil_mode=True``)."""
    return F.max_pool2d(x, kernel_size=2, stride=2, ceil_mode=True)


class ConvBnRelu(nn.Module):
    """3x3 convolution (with bias), batch-norm, ReLU: the official ``REBNCONV``, padding = dilation keeps the size."""

    def __init__(self, in_ch: int, out_ch: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv_s1 = nn.Conv2d(in_ch, out_ch, 3, padding=dilation, dilation=dilation)
        self.bn_s1 = nn.BatchNorm2d(out_ch)
        self.relu_s1 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu_s1(self.bn_s1(self.conv_s1(x)))


class RSU(nn.Module):
    """Residual U-block of ``height`` levels: ``rebnconvin`` then a small U-Net whose output is added back.

    Pooled variant (RSU-7 .. RSU-4): levels 1..height-1 run at halving resolutions, the bottom level
    ``rebnconv{height}`` is a dilation-2 conv at the lowest resolution. Dilated variant (RSU-4F, used
    where the maps are already small): no pooling, level k uses dilation 2**(k-1) instead. Decoder
    conv ``rebnconv{k}d`` fuses the level below with the encoder's level k and keeps that level's dilation.
    """

    def __init__(self, height: int, in_ch: int, mid_ch: int, out_ch: int, *, dilated: bool = False) -> None:
        super().__init__()
        self.height = height
        self.pooled = not dilated
        if dilated:
            dilations = [2**level for level in range(height)]
        else:
            dilations = [1] * (height - 1) + [2]

        self.rebnconvin = ConvBnRelu(in_ch, out_ch)
        for level in range(1, height + 1):
            level_in = out_ch if level == 1 else mid_ch
            self.add_module(f"rebnconv{level}", ConvBnRelu(level_in, mid_ch, dilations[level - 1]))
        for level in range(height - 1, 0, -1):
            self.add_module(
                f"rebnconv{level}d", ConvBnRelu(2 * mid_ch, out_ch if level == 1 else mid_ch, dilations[level - 1])
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hxin = self.rebnconvin(x)
        skips = []
        hx = hxin
        for level in range(1, self.height):
            hx = getattr(self, f"rebnconv{level}")(hx)
            skips.append(hx)
            if self.pooled and level < self.height - 1:
                hx = downsample(hx)
        hx = getattr(self, f"rebnconv{self.height}")(hx)
        for level in range(self.height - 1, 0, -1):
            hx = getattr(self, f"rebnconv{level}d")(torch.cat((hx, skips[level - 1]), 1))
            if self.pooled and level > 1:
                hx = upsample_like(hx, skips[level - 2])
        return hx + hxin


# RSU height and dilated flag of encoder stages 1..6; decoder stage kd repeats stage k's type.
_STAGE_KINDS = [(7, False), (6, False), (5, False), (4, False), (4, True), (4, True)]


class NestedUNet(nn.Module):
    """Encoder ``stage1..stage6``, decoder ``stage5d..stage1d`` and 1-channel side convs ``side1..side6``.

    ``encoder`` and ``decoder`` list (in_ch, mid_ch, out_ch) of stages 1..6 and 1d..5d. Subclasses
    add the stem and the head; :meth:`side_logits` is the part they share.
    """

    def __init__(self, encoder: list[tuple[int, int, int]], decoder: list[tuple[int, int, int]]) -> None:
        super().__init__()
        for index, ((height, dilated), channels) in enumerate(zip(_STAGE_KINDS, encoder), start=1):
            self.add_module(f"stage{index}", RSU(height, *channels, dilated=dilated))
        for index in range(len(decoder), 0, -1):
            height, dilated = _STAGE_KINDS[index - 1]
            self.add_module(f"stage{index}d", RSU(height, *decoder[index - 1], dilated=dilated))
        side_channels = [channels[2] for channels in decoder] + [encoder[-1][2]]
        for index, in_ch in enumerate(side_channels, start=1):
            self.add_module(f"side{index}", nn.Conv2d(in_ch, 1, 3, padding=1))

    def side_logits(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Side logits d1..d6 (each at its stage's resolution) and the maps they come from (hx1d..hx5d, hx6)."""
        skips = []
        hx = x
        for index in range(1, 6):
            hx = getattr(self, f"stage{index}")(hx)
            skips.append(hx)
            hx = downsample(hx)
        hx = self.stage6(hx)
        features = [hx]
        for index in range(5, 0, -1):
            hx = getattr(self, f"stage{index}d")(torch.cat((upsample_like(hx, skips[index - 1]), skips[index - 1]), 1))
            features.insert(0, hx)
        logits = [getattr(self, f"side{index}")(feature) for index, feature in enumerate(features, start=1)]
        return logits, features


class U2Net(NestedUNet):
    """U^2-Net: side logits resized to the input, fused by a 1x1 ``outconv``; returns 7 sigmoid maps.

    Output: ``(sigmoid(d0), sigmoid(d1), ..., sigmoid(d6))``, each ``N x 1 x H x W``; the fused
    ``d0`` (first) is the prediction, as in the official test scripts.
    """

    def __init__(self, encoder: list[tuple[int, int, int]], decoder: list[tuple[int, int, int]]) -> None:
        super().__init__(encoder, decoder)
        self.outconv = nn.Conv2d(6, 1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, _ = self.side_logits(x)
        d1 = logits[0]
        sides = [d1] + [upsample_like(d, d1) for d in logits[1:]]
        fused = self.outconv(torch.cat(sides, 1))
        return tuple(torch.sigmoid(d) for d in [fused, *sides])


@register("u2net", family="u2net", source=SOURCE)
def build_u2net() -> nn.Module:
    """Official ``U2NET(3, 1)`` (also the architecture of u2net_human_seg)."""
    encoder = [(3, 32, 64), (64, 32, 128), (128, 64, 256), (256, 128, 512), (512, 256, 512), (512, 256, 512)]
    decoder = [(128, 16, 64), (256, 32, 64), (512, 64, 128), (1024, 128, 256), (1024, 256, 512)]
    return U2Net(encoder, decoder)


@register("u2netp", family="u2net", source=SOURCE)
def build_u2netp() -> nn.Module:
    """Official ``U2NETP(3, 1)``: same topology, 16 mid and 64 out channels everywhere."""
    encoder = [(3, 16, 64)] + [(64, 16, 64)] * 5
    decoder = [(128, 16, 64)] * 5
    return U2Net(encoder, decoder)
