"""ICNet with a dilated ResNet-18 (output stride 8), as ``thuyngch/Human-Segmentation-PyTorch`` defines it.

Three branches share one backbone as upstream's ``models/ICNet.py`` wires them: a light 3-conv
branch on the full image (stride 8), ResNet stem..layer2 on the half-size image (stride 16 of
the input), and layer3..layer4 on a further halved copy of that output (stride 32). Two cascade
feature fusions merge them, the classifier runs at stride 4 and the logits are upsampled 4x.

Following the released revision, every resize uses a fixed ``scale_factor`` with
``align_corners=True`` (an earlier revision computed "(n - 1) / k + 1"-style sizes instead, meant
for 225-pixel crops, and returned 313x313 logits for a 320x320 input). The pyramid pooling has no
weights: it adds the four resized pooled maps (bins 1, 2, 3, 6) of its input to that input.
"""

from __future__ import annotations

from collections import OrderedDict

import torch.nn.functional as F
from torch import Tensor, nn

from .human_seg_backbones import ResNetBackbone, init_like_upstream, resnet18_backbone
from .human_seg_bisenet import NUM_CLASSES, SOURCE, ConvBNReLU
from .registry import register

PYRAMID_BINS = (1, 2, 3, 6)
BRANCH_CHANNELS = 128


def _resize(x: Tensor, *, scale: float | None = None, like: Tensor | None = None) -> Tensor:
    size = None if like is None else like.shape[2:]
    return F.interpolate(x, size=size, scale_factor=scale, mode="bilinear", align_corners=True)


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1) -> nn.Sequential:
    """Bias-free convolution and batch norm without activation (the activation follows the sum)."""
    padding = dilation * (kernel_size // 2)
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False),
            bn=nn.BatchNorm2d(out_channels),
        )
    )


def _pyramid_sum(x: Tensor, bins: tuple[int, ...] = PYRAMID_BINS) -> Tensor:
    """Weight-free pyramid pooling: the input plus each bin's average pool (of the input) resized back."""
    total = x
    for bin_size in bins:
        total = total + _resize(F.adaptive_avg_pool2d(x, bin_size), like=x)
    return total


class CascadeFeatureFusion(nn.Module):
    """Upsample the coarse branch to the fine one, dilated 3x3 on it, 1x1 on the fine one, add, ReLU.

    ``conv_low_cls`` is the auxiliary classifier of the upsampled coarse input (training only).
    """

    def __init__(self, low_channels: int, high_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv_low = _conv_bn(low_channels, BRANCH_CHANNELS, 3, dilation=2)
        self.conv_high = _conv_bn(high_channels, BRANCH_CHANNELS, 1)
        self.conv_low_cls = nn.Conv2d(BRANCH_CHANNELS, num_classes, 1, bias=False)

    def forward(self, low: Tensor, high: Tensor) -> tuple[Tensor, Tensor]:
        """The fused features and ``low`` resized to ``high`` (what ``conv_low_cls`` reads)."""
        low = _resize(low, like=high)
        return F.relu(self.conv_low(low) + self.conv_high(high)), low


def _stem_to_layer2(backbone: ResNetBackbone, x: Tensor) -> Tensor:
    x = backbone.maxpool(backbone.relu(backbone.bn1(backbone.conv1(x))))
    return backbone.layer2(backbone.layer1(x))


class ICNet(nn.Module):
    """Upstream ``ICNet(backbone='resnet18')``.

    Eval mode returns one tensor: logits (no softmax), ``N x num_classes x H x W`` for ``H, W``
    multiples of 32. Training mode returns ``(logits_1/4, aux_1/8, aux_1/16)``, none upsampled to the input.
    """

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.conv_sub1 = nn.Sequential(
            OrderedDict(
                conv1=ConvBNReLU(3, 32, 3, stride=2, padding=1, bias=False),
                conv2=ConvBNReLU(32, 32, 3, stride=2, padding=1, bias=False),
                conv3=ConvBNReLU(32, 64, 3, stride=2, padding=1, bias=False),
            )
        )
        self.backbone = resnet18_backbone(output_stride=8)
        self.conv_sub4_reduce = ConvBNReLU(512, 512 // 4, 1, bias=False)
        self.cff_24 = CascadeFeatureFusion(512 // 4, 128, num_classes)
        self.cff_12 = CascadeFeatureFusion(BRANCH_CHANNELS, 64, num_classes)
        self.conv_cls = nn.Conv2d(BRANCH_CHANNELS, num_classes, 1, bias=False)
        init_like_upstream(self)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        sub1 = self.conv_sub1(x)
        sub2 = _stem_to_layer2(self.backbone, _resize(x, scale=0.5))
        sub4 = self.backbone.layer4(self.backbone.layer3(_resize(sub2, scale=0.5)))
        sub4 = self.conv_sub4_reduce(_pyramid_sum(sub4))
        fused_24, low_24 = self.cff_24(sub4, sub2)
        fused_12, low_12 = self.cff_12(fused_24, sub1)
        logits = self.conv_cls(_resize(fused_12, scale=2))
        if not self.training:
            return _resize(logits, scale=4)
        return logits, self.cff_12.conv_low_cls(low_12), self.cff_24.conv_low_cls(low_24)


@register("icnet_resnet18", family="human_seg", source=SOURCE)
def build_icnet_resnet18() -> nn.Module:
    """Upstream ``ICNet(backbone='resnet18', num_classes=2)`` (config/config_ICNet.json)."""
    return ICNet()
