"""BiSeNet with a ResNet-18 context path, as ``thuyngch/Human-Segmentation-PyTorch`` defines it.

Upstream (``models/BiSeNet.py``) departs from the BiSeNet paper in ways that matter for conformance:
the feature-fusion module outputs ``num_classes`` channels directly (no separate classifier before
the final upsampling), the network ends with a 1x1 ``conv_final`` *after* the 8x bilinear upsampling,
and every resize uses ``align_corners=True`` with a fixed ``scale_factor`` (so the input side must be
a multiple of 32). The attention and fusion 1x1 convolutions carry no bias in the released code
(an earlier revision had biases; its checkpoints would not load strictly).

This module also hosts the piece the other ``human_seg`` heads reuse: :class:`ConvBNReLU`
(upstream's ``ConvBlock``, children ``conv``/``bn``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .human_seg_backbones import init_like_upstream, resnet18_backbone
from .registry import register

SOURCE = "https://github.com/thuyngch/Human-Segmentation-PyTorch"
NUM_CLASSES = 2  # background / person, as in every released human_seg config


class ConvBNReLU(nn.Module):
    """Convolution, batch norm, ReLU; upstream's ``ConvBlock`` (its conv has a bias unless told not to)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _upsample(x: Tensor, factor: int) -> Tensor:
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=True)


class SpatialPath(nn.Module):
    """Three stride-2 conv blocks (64, 128, 256 channels): a 1/8-resolution, detail-preserving branch."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(3, width, 3, stride=2, padding=1)
        self.conv2 = ConvBNReLU(width, 2 * width, 3, stride=2, padding=1)
        self.conv3 = ConvBNReLU(2 * width, 4 * width, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3(self.conv2(self.conv1(x)))


class AttentionRefinement(nn.Module):
    """Channel attention: global average, bias-free 1x1 conv, sigmoid, rescale the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(self.conv(F.adaptive_avg_pool2d(x, 1)))


class FeatureFusion(nn.Module):
    """Concatenate both paths, reduce straight to class channels, then add a squeeze-excited copy."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.convblock = ConvBNReLU(in_channels, num_classes, 3, padding=1)
        self.conv1 = nn.Conv2d(num_classes, num_classes, 1, bias=False)
        self.conv2 = nn.Conv2d(num_classes, num_classes, 1, bias=False)

    def forward(self, spatial: Tensor, context: Tensor) -> Tensor:
        fused = self.convblock(torch.cat([spatial, context], dim=1))
        weight = torch.sigmoid(self.conv2(F.relu(self.conv1(F.adaptive_avg_pool2d(fused, 1)))))
        return fused + fused * weight


class BiSeNet(nn.Module):
    """Upstream ``BiSeNet(backbone='resnet18')``.

    Eval mode returns one tensor: logits (no softmax) of shape ``N x num_classes x H x W``.
    Training mode returns ``(logits, aux_os16, aux_os32)``, the two auxiliary heads also at full size.
    """

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.spatial_path = SpatialPath(64)
        self.context_path = resnet18_backbone()
        self.arm_os16 = AttentionRefinement(256)
        self.arm_os32 = AttentionRefinement(512)
        self.ffm = FeatureFusion(256 + 256 + 512, num_classes)
        self.conv_final = nn.Conv2d(num_classes, num_classes, 1)
        self.sup_os16 = nn.Conv2d(256, num_classes, 1)
        self.sup_os32 = nn.Conv2d(512, num_classes, 1)
        init_like_upstream(self)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        spatial = self.spatial_path(x)
        *_, os16, os32 = self.context_path.stages(x)
        # The global context multiplies (upstream: torch.mul) the refined stride-32 features.
        os32 = self.arm_os32(os32) * F.adaptive_avg_pool2d(os32, 1)
        os16 = _upsample(self.arm_os16(os16), 2)
        os32 = _upsample(os32, 4)
        logits = self.conv_final(_upsample(self.ffm(spatial, torch.cat([os16, os32], dim=1)), 8))
        if not self.training:
            return logits
        return logits, _upsample(self.sup_os16(os16), 8), _upsample(self.sup_os32(os32), 8)


@register("bisenet_resnet18", family="human_seg", source=SOURCE)
def build_bisenet_resnet18() -> nn.Module:
    """Upstream ``BiSeNet(backbone='resnet18', num_classes=2)`` (config/config_BiSeNet.json)."""
    return BiSeNet()
