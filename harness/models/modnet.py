"""MODNet (Ke et al., "MODNet: Real-Time Trimap-Free Portrait Matting via Objective Decomposition").

Follows ``ZHKKKe/MODNet`` ``src/models/modnet.py`` and ``src/models/backbones/`` (commit 28165a4):
a MobileNetV2 encoder feeding a low-resolution (semantic) branch, a high-resolution (detail)
branch and a fusion branch that produces the alpha matte. Module and parameter names mirror the
official ones so that the released checkpoints (after stripping the ``module.`` prefix that
``nn.DataParallel`` added) load with ``strict=True``.

The encoder is built with ``backbone_pretrained=False`` semantics: nothing is downloaded or read
from disk. The official network holds the *same* encoder object twice, as ``backbone`` and as
``lr_branch.backbone``, so its ``state_dict`` lists every encoder tensor under both names; this
module keeps that sharing, because the checkpoints carry both copies and a strict load needs them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .human_seg_backbones import InvertedResidual  # the same MobileNetV2 block, key for key
from .registry import register

SOURCE = "https://github.com/ZHKKKe/MODNet (src/models/modnet.py, commit 28165a4)"

HR_CHANNELS = 32
"""Width of the high-resolution and fusion branches (the official default ``hr_channels``)."""

ENCODER_CHANNELS = (16, 24, 32, 96, 1280)
"""Channels of the encoder taps at strides 2, 4, 8, 16 and 32 (``enc_channels`` upstream)."""

# MobileNetV2 inverted-residual stages as (expansion t, output channels c, repeats n, first stride s).
_MOBILENETV2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

# Indices into ``features`` after which the encoder output reaches stride 2, 4, 8, 16 and 32.
_TAP_ENDS = (2, 4, 7, 14, 19)


# --------------------------------------------------------------------------- MobileNetV2 encoder


def _conv_bn_relu6(in_ch: int, out_ch: int, kernel: int, stride: int) -> nn.Sequential:
    """Stem and head convolutions of MobileNetV2 (bias-free conv, BN, ReLU6)."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU6(inplace=True),
    )


class MobileNetV2(nn.Module):
    """The MobileNetV2 feature stack (width 1.0, no classifier) as a flat ``features`` Sequential."""

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_relu6(in_channels, 32, 3, 2)]
        channels = 32
        for expansion, out_ch, repeats, stride in _MOBILENETV2_STAGES:
            for i in range(repeats):
                layers.append(InvertedResidual(channels, out_ch, stride if i == 0 else 1, expansion))
                channels = out_ch
        layers.append(_conv_bn_relu6(channels, ENCODER_CHANNELS[-1], 1, 1))
        self.features = nn.Sequential(*layers)


class MobileNetV2Backbone(nn.Module):
    """Runs the MobileNetV2 stack and returns its outputs at strides 2, 4, 8, 16 and 32.

    The extra ``model`` level exists only so that keys read ``backbone.model.features.*`` as in
    the official wrapper.
    """

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.model = MobileNetV2(in_channels)

    def forward(self, x: Tensor) -> list[Tensor]:
        taps = []
        start = 0
        for end in _TAP_ENDS:
            for layer in self.model.features[start:end]:
                x = layer(x)
            taps.append(x)
            start = end
        return taps


# --------------------------------------------------------------------------- MODNet building blocks


class IBNorm(nn.Module):
    """Batch norm on the first half of the channels, affine-free instance norm on the rest.

    Instance norm makes the matte less sensitive to global colour/contrast shifts while batch
    norm keeps the learned statistics; only the BN half owns state.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.split = channels // 2
        self.bnorm = nn.BatchNorm2d(self.split, affine=True)
        self.inorm = nn.InstanceNorm2d(channels - self.split, affine=False)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat((self.bnorm(x[:, : self.split]), self.inorm(x[:, self.split :])), dim=1)


class Conv2dIBNormRelu(nn.Module):
    """Biased convolution, optionally followed by :class:`IBNorm` and ReLU, in a ``layers`` Sequential."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        stride: int = 1,
        *,
        with_ibn: bool = True,
        with_relu: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2)]
        if with_ibn:
            layers.append(IBNorm(out_ch))
        if with_relu:
            layers.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


def _projection(in_ch: int) -> Conv2dIBNormRelu:
    """A bare 1x1 convolution to one logit channel (no norm, no activation)."""
    return Conv2dIBNormRelu(in_ch, 1, 1, with_ibn=False, with_relu=False)


class SEBlock(nn.Module):
    """Channel attention on the stride-32 features (the code's stand-in for the paper's e-ASPP)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        weights = self.fc(self.pool(x).flatten(1))
        return x * weights[:, :, None, None]


def _resize(x: Tensor, scale: float) -> Tensor:
    """Bilinear rescale by ``scale`` with the (half-pixel) convention used throughout MODNet."""
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------- branches


class LRBranch(nn.Module):
    """Semantic branch: encoder, SE attention, two upsampling 5x5 convs down to a stride-8 map."""

    def __init__(self, backbone: MobileNetV2Backbone) -> None:
        super().__init__()
        c = ENCODER_CHANNELS
        self.backbone = backbone
        self.se_block = SEBlock(c[4])
        self.conv_lr16x = Conv2dIBNormRelu(c[4], c[3], 5)
        self.conv_lr8x = Conv2dIBNormRelu(c[3], c[2], 5)
        self.conv_lr = Conv2dIBNormRelu(c[2], 1, 3, stride=2, with_ibn=False, with_relu=False)

    def forward(self, img: Tensor, inference: bool) -> tuple[Tensor | None, Tensor, Tensor, Tensor]:
        """``(semantic prediction or None, lr8x, enc2x, enc4x)``; the prediction is training-only."""
        enc2x, enc4x, _, _, enc32x = self.backbone(img)
        lr16x = self.conv_lr16x(_resize(self.se_block(enc32x), 2))
        lr8x = self.conv_lr8x(_resize(lr16x, 2))
        semantic = None if inference else torch.sigmoid(self.conv_lr(lr8x))
        return semantic, lr8x, enc2x, enc4x


class HRBranch(nn.Module):
    """Detail branch: refines boundaries from shallow encoder features, the image and the semantic map."""

    def __init__(self, hr: int = HR_CHANNELS) -> None:
        super().__init__()
        c = ENCODER_CHANNELS
        self.tohr_enc2x = Conv2dIBNormRelu(c[0], hr, 1)
        self.conv_enc2x = Conv2dIBNormRelu(hr + 3, hr, 3, stride=2)
        self.tohr_enc4x = Conv2dIBNormRelu(c[1], hr, 1)
        self.conv_enc4x = Conv2dIBNormRelu(2 * hr, 2 * hr, 3)
        self.conv_hr4x = nn.Sequential(
            Conv2dIBNormRelu(3 * hr + 3, 2 * hr, 3),
            Conv2dIBNormRelu(2 * hr, 2 * hr, 3),
            Conv2dIBNormRelu(2 * hr, hr, 3),
        )
        self.conv_hr2x = nn.Sequential(
            Conv2dIBNormRelu(2 * hr, 2 * hr, 3),
            Conv2dIBNormRelu(2 * hr, hr, 3),
            Conv2dIBNormRelu(hr, hr, 3),
            Conv2dIBNormRelu(hr, hr, 3),
        )
        self.conv_hr = nn.Sequential(Conv2dIBNormRelu(hr + 3, hr, 3), _projection(hr))

    def forward(
        self, img: Tensor, enc2x: Tensor, enc4x: Tensor, lr8x: Tensor, inference: bool
    ) -> tuple[Tensor | None, Tensor]:
        """``(detail prediction or None, hr2x)``; the prediction is training-only."""
        enc2x = self.tohr_enc2x(enc2x)
        hr4x = self.conv_enc2x(torch.cat((_resize(img, 1 / 2), enc2x), dim=1))
        hr4x = self.conv_enc4x(torch.cat((hr4x, self.tohr_enc4x(enc4x)), dim=1))
        hr4x = self.conv_hr4x(torch.cat((hr4x, _resize(lr8x, 2), _resize(img, 1 / 4)), dim=1))
        hr2x = self.conv_hr2x(torch.cat((_resize(hr4x, 2), enc2x), dim=1))
        if inference:
            return None, hr2x
        detail = self.conv_hr(torch.cat((_resize(hr2x, 2), img), dim=1))
        return torch.sigmoid(detail), hr2x


class FusionBranch(nn.Module):
    """Merges the semantic and detail features into the full-resolution alpha matte."""

    def __init__(self, hr: int = HR_CHANNELS) -> None:
        super().__init__()
        self.conv_lr4x = Conv2dIBNormRelu(ENCODER_CHANNELS[2], hr, 5)
        self.conv_f2x = Conv2dIBNormRelu(2 * hr, hr, 3)
        self.conv_f = nn.Sequential(Conv2dIBNormRelu(hr + 3, hr // 2, 3), _projection(hr // 2))

    def forward(self, img: Tensor, lr8x: Tensor, hr2x: Tensor) -> Tensor:
        lr2x = _resize(self.conv_lr4x(_resize(lr8x, 2)), 2)
        f2x = self.conv_f2x(torch.cat((lr2x, hr2x), dim=1))
        return torch.sigmoid(self.conv_f(torch.cat((_resize(f2x, 2), img), dim=1)))


# --------------------------------------------------------------------------- network


class MODNet(nn.Module):
    """MODNet with a MobileNetV2 encoder; input height and width must be multiples of 32.

    ``forward(img, inference=True)`` returns ``(semantic, detail, matte)`` like the official
    model. With ``inference=True`` (the default, so exporters can call it with the image alone)
    the first two are ``None`` and only the matte is computed. All predictions are probabilities:
    the sigmoid is applied inside the network. The matte is ``N x 1 x H x W``; the training-only
    semantic map is at stride 16 and the detail map at full resolution.
    """

    def __init__(self, in_channels: int = 3, hr_channels: int = HR_CHANNELS) -> None:
        super().__init__()
        self.backbone = MobileNetV2Backbone(in_channels)
        self.lr_branch = LRBranch(self.backbone)
        self.hr_branch = HRBranch(hr_channels)
        self.f_branch = FusionBranch(hr_channels)
        self._init_weights()

    def _init_weights(self) -> None:
        """The official effective initialisation: Kaiming-uniform convs with zero bias, unit norms.

        (Linear layers keep PyTorch's default, as upstream.)
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, a=0, mode="fan_in", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, img: Tensor, inference: bool = True) -> tuple[Tensor | None, Tensor | None, Tensor]:
        semantic, lr8x, enc2x, enc4x = self.lr_branch(img, inference)
        detail, hr2x = self.hr_branch(img, enc2x, enc4x, lr8x, inference)
        return semantic, detail, self.f_branch(img, lr8x, hr2x)


@register("modnet", family="modnet", source=SOURCE)
def build_modnet() -> MODNet:
    """MODNet as released (MobileNetV2 encoder, ``hr_channels=32``), randomly initialised."""
    return MODNet()
