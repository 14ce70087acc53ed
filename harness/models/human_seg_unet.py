"""UNet of ``thuyngch/Human-Segmentation-PyTorch`` (``models/UNet.py``) on MobileNetV2 and ResNet-18.

The network is the repository's own UNet variant, not Ronneberger's: the encoder's five stage
outputs (strides 2..32) feed four decoder blocks, each upsampling 2x with a 4x4 transposed
convolution, concatenating the skip and fusing with one unit of the encoder's own kind (an
inverted residual for MobileNetV2, a projected basic block for ResNet). The stride-2 result passes
two plain 3x3 convolutions (16 or 64 -> 3 -> classes) and is bilinearly resized
(``align_corners=True``) to the input size inside ``forward``.

Output: one tensor of raw logits, ``(N, 2, H, W)`` at the input resolution; channel 1 is
"person". Softmax is *not* applied inside the network (the repository's inference scripts apply
``softmax(dim=1)`` and keep channel 1). H and W must be multiples of 32, since every decoder
stage concatenates its upsampled input with a skip of exactly twice its size.

Checkpoints (``base/base_trainer.py``) are dicts with keys ``arch, epoch, logger, state_dict,
optimizer, monitor_best, config``; the weights are ``checkpoint["state_dict"]``, keyed as this
module's ``state_dict`` (``backbone.*``, ``decoder1..4.*``, ``conv_last.*``), with a ``module.``
prefix only if the model was trained under ``DataParallel`` (``n_gpu > 1``; the released configs
use ``n_gpu: 1``).

Documented figures (README, 1x3x320x320): UNet_MobileNetV2 4.7 M params / 1.3 G, UNet_ResNet18
16.6 M / 9.1 G. The parameter counts match these networks exactly (4,683,331 and 16,613,179).
The README's "FLOPs" are multiply-accumulates of the ``nn.Conv2d`` layers only: the repository's
counter skips ``ConvTranspose2d``. Counted as in :mod:`harness.models.profile` (multiply-add = 2,
transposed convolutions included), the networks cost about 3.06 and 20.23 GFLOPs.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .human_seg_backbones import (
    BasicBlock,
    InvertedResidual,
    MobileNetV2Backbone,
    ResNetBackbone,
    conv1x1,
    init_like_upstream,
    make_divisible,
    mobilenetv2_backbone,
    resnet18_backbone,
)
from .registry import register

SOURCE = "https://github.com/thuyngch/Human-Segmentation-PyTorch (models/UNet.py)"
NUM_CLASSES = 2  # background, person: every released config trains two classes

# A decoder's fusion unit, given the width ``c`` it must output from ``2c`` concatenated channels.
FusionUnit = Callable[[int], nn.Module]


class _DecoderBlock(nn.Module):
    """Upsample 2x, concatenate the skip, fuse: ``deconv`` then ``block_unit`` (upstream's names)."""

    def __init__(self, in_channels: int, out_channels: int, block_unit: nn.Module) -> None:
        super().__init__()
        self.deconv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1)
        self.block_unit = block_unit

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.block_unit(torch.cat([self.deconv(x), skip], dim=1))


class HumanSegUNet(nn.Module):
    """Encoder with ``stages()`` + four decoder blocks + a two-convolution classifier."""

    def __init__(
        self,
        backbone: MobileNetV2Backbone | ResNetBackbone,
        deepest_channels: int,
        decoder_channels: tuple[int, int, int, int],
        fusion_unit: FusionUnit,
        num_classes: int = NUM_CLASSES,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        widths = (deepest_channels, *decoder_channels)
        for index, (c_in, c_out) in enumerate(zip(widths, widths[1:]), start=1):
            self.add_module(f"decoder{index}", _DecoderBlock(c_in, c_out, fusion_unit(c_out)))
        self.conv_last = nn.Sequential(
            nn.Conv2d(decoder_channels[-1], 3, kernel_size=3, padding=1),
            nn.Conv2d(3, num_classes, kernel_size=3, padding=1),
        )
        init_like_upstream(self)

    def forward(self, x: Tensor) -> Tensor:
        *skips, y = self.backbone.stages(x)
        for decoder, skip in zip((self.decoder1, self.decoder2, self.decoder3, self.decoder4), reversed(skips)):
            y = decoder(y, skip)
        return F.interpolate(self.conv_last(y), size=x.shape[-2:], mode="bilinear", align_corners=True)


def _inverted_residual_fusion(expansion: int) -> FusionUnit:
    return lambda c: InvertedResidual(2 * c, c, 1, expansion)


def _basic_block_fusion(c: int) -> nn.Module:
    """A basic block taking ``2c`` channels to ``c``, its shortcut projected by a 1x1 conv + BN."""
    return BasicBlock(2 * c, c, 1, nn.Sequential(conv1x1(2 * c, c), nn.BatchNorm2d(c)))


@register("unet_mobilenetv2", family="human_seg", source=SOURCE)
def unet_mobilenetv2() -> HumanSegUNet:
    """``UNet(backbone="mobilenetv2", num_classes=2)``: alpha 1.0, expansion 6."""
    alpha, expansion = 1.0, 6
    backbone = mobilenetv2_backbone(alpha, expansion)
    widths = tuple(make_divisible(int(c * alpha)) for c in (96, 32, 24, 16))
    return HumanSegUNet(backbone, backbone.last_channel, widths, _inverted_residual_fusion(expansion))


@register("unet_resnet18", family="human_seg", source=SOURCE)
def unet_resnet18() -> HumanSegUNet:
    """``UNet(backbone="resnet18", num_classes=2)``."""
    return HumanSegUNet(resnet18_backbone(), 512, (256, 128, 64, 64), _basic_block_fusion)
