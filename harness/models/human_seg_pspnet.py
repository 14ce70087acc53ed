"""PSPNet with a dilated ResNet-18 (output stride 8), as ``thuyngch/Human-Segmentation-PyTorch`` defines it.

Upstream (``models/PSPNet.py``) concatenates the 512-channel stage-5 features with four pooled
branches (bins 1, 2, 3, 6; 128 channels each), reduces to 128 channels with a 3x3 conv block and
classifies with a bias-free 1x1 convolution; the logits are resized to the input size with
``align_corners=True``. An auxiliary head on stage 4 is only evaluated in training mode but its
weights are part of the checkpoint (and of the parameter count: 147,712 of them, which is why the
full network has 12.77 M parameters where the README, counting through forward hooks in eval mode,
reports 12.6 M).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .human_seg_backbones import init_like_upstream, resnet18_backbone
from .human_seg_bisenet import NUM_CLASSES, SOURCE, ConvBNReLU
from .registry import register

PYRAMID_BINS = (1, 2, 3, 6)
DROPOUT = 0.1


class PyramidPooling(nn.Module):
    """Average-pool to each bin size, 1x1 conv block to ``channels / len(bins)``, resize back, concatenate."""

    def __init__(self, channels: int, bins: tuple[int, ...] = PYRAMID_BINS) -> None:
        super().__init__()
        self.bins = bins
        self.convs = nn.ModuleList(ConvBNReLU(channels, channels // len(bins), 1, bias=False) for _ in bins)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[2:]
        pooled = [
            F.interpolate(conv(F.adaptive_avg_pool2d(x, bin_size)), size=size, mode="bilinear", align_corners=True)
            for bin_size, conv in zip(self.bins, self.convs)
        ]
        return torch.cat([x, *pooled], dim=1)


def _head(in_channels: int, mid_channels: int, num_classes: int) -> nn.Sequential:
    """3x3 conv block, channel dropout (identity in eval), bias-free 1x1 classifier: upstream's output heads."""
    return nn.Sequential(
        OrderedDict(
            conv1=ConvBNReLU(in_channels, mid_channels, 3, padding=1, bias=False),
            dropout=nn.Dropout2d(DROPOUT),
            conv2=nn.Conv2d(mid_channels, num_classes, 1, bias=False),
        )
    )


class PSPNet(nn.Module):
    """Upstream ``PSPNet(backbone='resnet18')``.

    Eval mode returns one tensor: logits (no softmax), ``N x num_classes x H x W``.
    Training mode returns ``(logits, aux)`` with the auxiliary logits left at stride 8.
    """

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.backbone = resnet18_backbone(output_stride=8)
        self.pyramid = PyramidPooling(512)
        self.main_output = _head(2 * 512, 512 // 4, num_classes)
        self.aux_output = _head(512 // 2, 512 // 8, num_classes)
        init_like_upstream(self)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        *_, stage4, stage5 = self.backbone.stages(x)
        logits = self.main_output(self.pyramid(stage5))
        logits = F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=True)
        if not self.training:
            return logits
        return logits, self.aux_output(stage4)


@register("pspnet_resnet18", family="human_seg", source=SOURCE)
def build_pspnet_resnet18() -> nn.Module:
    """Upstream ``PSPNet(backbone='resnet18', num_classes=2)`` (config/config_PSPNet.json)."""
    return PSPNet()
