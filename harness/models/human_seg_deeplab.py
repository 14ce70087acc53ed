"""DeepLabV3+ on ResNet-18 from ``thuyngch/Human-Segmentation-PyTorch`` (``models/DeepLab.py``).

Structure: ResNet-18 encoder -> ASPP (1x1 branch, three dilated 3x3 branches, image pooling;
256 channels each, fused by a 1x1 conv, dropout 0.5) -> decoder (48-channel projection of the
stride-4 ``layer1`` features, concatenated with the bilinearly upsampled ASPP output, two 3x3
convs, 1x1 classifier) -> bilinear resize (``align_corners=True``) to the input size.

The quirk kept on purpose: the repository's ``DeepLabV3Plus`` (the class its ``models/__init__``
exports and ``config/config_DeepLab.json`` names) passes ``output_stride=16`` to ASPP, which then
uses dilations 6/12/18, but builds the ResNet with its *default* output stride 32, so ASPP runs on
the stride-32 map. The older ``models/DeepLabV3Plus.py`` (class ``DeepLab``) gave the backbone the
same output stride (layer4 dilated, stride 16). Both have identical parameter names and shapes,
so a checkpoint of either loads into either; ``backbone_output_stride`` selects the geometry and
the registered builder follows ``models/DeepLab.py``.

Output: one tensor of raw logits ``(N, 2, H, W)`` at the input resolution, channel 1 = person,
no softmax inside (as the repository's UNet inference scripts, ``softmax(dim=1)[:, 1]`` outside).

Checkpoints: same trainer as the UNets, ``torch.load(path)["state_dict"]``, keys ``backbone.*``,
``aspp.*``, ``decoder.*``; a ``module.`` prefix only under multi-GPU ``DataParallel``.

Figures: 16,603,298 parameters, which the seed's 16.6 M matches. The seed's (and README's) 9.1 G
FLOPs is UNet_ResNet18's figure copied into this row: the repository's counter reports conv
multiply-accumulates, and this network has 12.38 G of them at 1x3x320x320 (16.10 G with the stride-16
backbone). Counted as in :mod:`harness.models.profile` (multiply-add = 2) that is about 24.76
GFLOPs (32.19 G with the stride-16 backbone).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .human_seg_backbones import init_like_upstream, resnet18_backbone
from .registry import register

SOURCE = "https://github.com/thuyngch/Human-Segmentation-PyTorch (models/DeepLab.py)"
NUM_CLASSES = 2  # background, person (config/config_DeepLab.json)

# ASPP's dilation rates of its three 3x3 branches, per nominal output stride.
_ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}
_ASPP_WIDTH = 256
_LOW_LEVEL_WIDTH = 48


class _ConvBnRelu(nn.Module):
    """One ASPP branch, named as upstream's ``_ASPPModule`` (``atrous_conv``, ``bn``, ``relu``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        padding = 0 if kernel_size == 1 else dilation
        self.atrous_conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.atrous_conv(x)))


class _ASPP(nn.Module):
    """Atrous spatial pyramid pooling: ``aspp1..4``, ``global_avg_pool``, then ``conv1/bn1/relu/dropout``."""

    def __init__(self, in_channels: int, output_stride: int) -> None:
        super().__init__()
        self.aspp1 = _ConvBnRelu(in_channels, _ASPP_WIDTH, 1, 1)
        for index, rate in enumerate(_ASPP_RATES[output_stride], start=2):
            self.add_module(f"aspp{index}", _ConvBnRelu(in_channels, _ASPP_WIDTH, 3, rate))
        self.global_avg_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, _ASPP_WIDTH, 1, bias=False),
            nn.BatchNorm2d(_ASPP_WIDTH),
            nn.ReLU(inplace=True),
        )
        self.conv1 = nn.Conv2d(5 * _ASPP_WIDTH, _ASPP_WIDTH, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(_ASPP_WIDTH)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: Tensor) -> Tensor:
        branches = [branch(x) for branch in (self.aspp1, self.aspp2, self.aspp3, self.aspp4)]
        pooled = self.global_avg_pool(x)
        branches.append(F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=True))
        return self.dropout(self.relu(self.bn1(self.conv1(torch.cat(branches, dim=1)))))


class _Decoder(nn.Module):
    """DeepLabV3+ decoder: ``conv1/bn1/relu`` on the low-level skip, ``last_conv`` after concatenation."""

    def __init__(self, low_level_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(low_level_channels, _LOW_LEVEL_WIDTH, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(_LOW_LEVEL_WIDTH)
        self.relu = nn.ReLU(inplace=True)
        fused = _ASPP_WIDTH + _LOW_LEVEL_WIDTH
        # The indices of this Sequential are checkpoint keys (``last_conv.0/1/4/5/8``): keep its order.
        self.last_conv = nn.Sequential(
            *_conv3x3_bn_relu(fused, _ASPP_WIDTH),
            nn.Dropout(0.5),
            *_conv3x3_bn_relu(_ASPP_WIDTH, _ASPP_WIDTH),
            nn.Dropout(0.1),
            nn.Conv2d(_ASPP_WIDTH, num_classes, 1),
        )

    def forward(self, x: Tensor, low_level: Tensor) -> Tensor:
        low_level = self.relu(self.bn1(self.conv1(low_level)))
        x = F.interpolate(x, size=low_level.shape[-2:], mode="bilinear", align_corners=True)
        return self.last_conv(torch.cat([x, low_level], dim=1))


def _conv3x3_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class DeepLabV3PlusResNet18(nn.Module):
    """DeepLabV3+ with a ResNet-18 encoder (``backbone``), ``aspp`` and ``decoder``."""

    def __init__(
        self,
        output_stride: int = 16,
        backbone_output_stride: int = 32,
        num_classes: int = NUM_CLASSES,
    ) -> None:
        super().__init__()
        self.backbone = resnet18_backbone(backbone_output_stride)
        self.aspp = _ASPP(512, output_stride)
        self.decoder = _Decoder(64, num_classes)
        init_like_upstream(self)

    def forward(self, x: Tensor) -> Tensor:
        _, low_level, _, _, deepest = self.backbone.stages(x)
        logits = self.decoder(self.aspp(deepest), low_level)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=True)


@register("deeplabv3plus_resnet18", family="human_seg", source=SOURCE)
def deeplabv3plus_resnet18() -> DeepLabV3PlusResNet18:
    """``DeepLabV3Plus(backbone="resnet18", output_stride=16, num_classes=2)`` as ``models/DeepLab.py`` builds it."""
    return DeepLabV3PlusResNet18(output_stride=16, backbone_output_stride=32)
