"""UNet 3+ (Huang et al., ICASSP 2020) as defined by avBuffer/UNet3plus_pth (``unet/UNet3Plus.py``).

That repository trains the network for portrait segmentation with ``UNet3Plus(n_channels=3, n_classes=1)``
(``train.py`` / ``predict.py``); ``feature_scale``, ``is_deconv`` and ``bilinear`` are accepted there but
unused (the widths are hard-coded), and ``is_batchnorm`` is always true. Only that configuration is
modelled here.

Every state_dict key follows the official attribute names (``conv1.conv1.0.weight``,
``h1_PT_hd4_conv.weight``, ``conv4d_1.weight``, ``outconv1.weight`` ...) so that an official checkpoint loads
with ``strict=True``. Modules are also registered in the official order and initialised the way the official
constructor does, so that under the same torch seed the weights come out identical to an official build.

Like the official ``forward``, the networks return probabilities (sigmoid applied inside), not logits.
The official ``utils/eval.py`` thresholds them at 0.5; its ``predict.py`` applies a second sigmoid before
thresholding, which is a bug of that script, not part of the network.
Inputs must have a height and width divisible by 16: the four 2x encoder poolings floor, the decoder's
full-scale skips pool with ``ceil_mode`` and upsample by fixed factors, so other sizes fail to concatenate
(the official network fails in the same way).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.models.registry import register

SOURCE = "https://github.com/avBuffer/UNet3plus_pth (unet/UNet3Plus.py @ c8621be)"
FAMILY = "unet3p"

ENCODER_WIDTHS = (64, 128, 256, 512, 1024)
SKIP_WIDTH = ENCODER_WIDTHS[0]  # every full-scale skip is squeezed to 64 channels ...
DECODER_WIDTH = SKIP_WIDTH * len(ENCODER_WIDTHS)  # ... and five of them are fused: 320 channels
DEPTH = len(ENCODER_WIDTHS)


def _init_like_official(module: nn.Module) -> None:
    """Re-draw conv weights (He normal, fan-in) and BN affine params (N(1, 0.02), zero bias).

    The official code applies this twice: to each encoder block as soon as it is built, then to the whole
    network at the end of the constructor. Doing the same (conv biases keep PyTorch's default) keeps the
    global RNG stream in step with the official constructor.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv + BN + ReLU; as a Sequential its children are keyed ``0`` (conv) and ``1`` (BN)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class _EncoderBlock(nn.Module):
    """Two conv-BN-ReLU layers, held as ``conv1``/``conv2`` to match the official ``unetConv2`` keys."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(in_channels, out_channels)
        self.conv2 = _conv_bn_relu(out_channels, out_channels)
        _init_like_official(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


@dataclass(frozen=True)
class _Skip:
    """One of the five inputs of decoder stage ``target``: which feature map, and how it is resized.

    ``source`` is the 1-based level of the feature map. Levels up to ``target`` come from the encoder and are
    max-pooled (``PT``) or taken as is (``Cat``); deeper levels come from the decoder (level 5 being the
    bottleneck) and are bilinearly upsampled (``UT``). The official attribute name encodes all of this.
    """

    source: int
    target: int

    @property
    def from_encoder(self) -> bool:
        return self.source <= self.target

    @property
    def in_channels(self) -> int:
        if self.from_encoder or self.source == DEPTH:
            return ENCODER_WIDTHS[self.source - 1]
        return DECODER_WIDTH

    @property
    def name(self) -> str:
        if self.source < self.target:
            return f"h{self.source}_PT_hd{self.target}"
        if self.source == self.target:
            return f"h{self.source}_Cat_hd{self.target}"
        return f"hd{self.source}_UT_hd{self.target}"

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """Bring level ``source`` to the resolution of level ``target`` (each level halves the size)."""
        if self.source < self.target:
            k = 2 ** (self.target - self.source)
            return F.max_pool2d(x, k, k, ceil_mode=True)
        if self.source > self.target:
            return F.interpolate(
                x, scale_factor=2 ** (self.source - self.target), mode="bilinear", align_corners=False
            )
        return x


def _stage_skips(target: int) -> list[_Skip]:
    """The five inputs of decoder stage ``target``, in the official concatenation order (level 1 first)."""
    return [_Skip(source, target) for source in range(1, DEPTH + 1)]


class _UNet3PlusBody(nn.Module):
    """Encoder and full-scale decoder; returns the feature maps ``hd1`` .. ``hd5`` (``hd5`` = bottleneck).

    Decoder stages are built deepest first (4, 3, 2, 1), as in the official constructor, because stage ``d``
    consumes the outputs of all deeper stages.
    """

    def __init__(self, in_channels: int, n_classes: int) -> None:
        super().__init__()
        # Kept under the official names: the official scripts read them (input check, sigmoid vs softmax).
        self.n_channels = in_channels
        self.n_classes = n_classes
        widths = (in_channels, *ENCODER_WIDTHS)
        for level in range(1, DEPTH + 1):
            setattr(self, f"conv{level}", _EncoderBlock(widths[level - 1], widths[level]))
        self._stages = {target: _stage_skips(target) for target in range(DEPTH - 1, 0, -1)}
        for target, skips in self._stages.items():
            for skip in skips:
                setattr(self, f"{skip.name}_conv", nn.Conv2d(skip.in_channels, SKIP_WIDTH, 3, padding=1))
                setattr(self, f"{skip.name}_bn", nn.BatchNorm2d(SKIP_WIDTH))
            setattr(self, f"conv{target}d_1", nn.Conv2d(DECODER_WIDTH, DECODER_WIDTH, 3, padding=1))
            setattr(self, f"bn{target}d_1", nn.BatchNorm2d(DECODER_WIDTH))

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder features ``h1`` .. ``h5``, each level at half the resolution of the previous one."""
        features = [self.conv1(x)]
        for level in range(2, DEPTH + 1):
            block = getattr(self, f"conv{level}")
            features.append(block(F.max_pool2d(features[-1], 2)))
        return features

    def _conv_bn_relu_by_name(self, conv: str, bn: str, x: torch.Tensor) -> torch.Tensor:
        """Conv, BN, ReLU on ``x`` with the flat, officially named conv and BN modules."""
        return F.relu(getattr(self, bn)(getattr(self, conv)(x)))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[hd1, hd2, hd3, hd4, hd5]``: the decoder outputs, with the bottleneck as ``hd5``."""
        maps = {level: f for level, f in enumerate(self._encode(x), start=1)}
        for target, skips in self._stages.items():
            parts = [
                self._conv_bn_relu_by_name(f"{s.name}_conv", f"{s.name}_bn", s.resize(maps[s.source]))
                for s in skips
            ]
            # Replacing the encoder map h{target} is safe: shallower stages only read levels >= target
            # from the decoder, and h{target} itself was consumed just now.
            fused = torch.cat(parts, 1)
            maps[target] = self._conv_bn_relu_by_name(f"conv{target}d_1", f"bn{target}d_1", fused)
        return [maps[level] for level in range(1, DEPTH + 1)]


class UNet3Plus(_UNet3PlusBody):
    """UNet 3+ without deep supervision: one ``N x n_classes x H x W`` probability map (sigmoid inside)."""

    def __init__(self, in_channels: int = 3, n_classes: int = 1) -> None:
        super().__init__(in_channels, n_classes)
        self.outconv1 = nn.Conv2d(DECODER_WIDTH, n_classes, 3, padding=1)
        _init_like_official(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.outconv1(self.features(x)[0]))


class UNet3PlusDeepSup(_UNet3PlusBody):
    """UNet 3+ with deep supervision: five probability maps, all upsampled to the input size.

    Output ``i`` (0-based) comes from decoder level ``i + 1``; output 0 (from ``hd1``, full resolution, no
    upsampling) is the prediction, the others exist for the training losses.
    """

    def __init__(self, in_channels: int = 3, n_classes: int = 1) -> None:
        super().__init__(in_channels, n_classes)
        for level in range(1, DEPTH + 1):
            width = ENCODER_WIDTHS[-1] if level == DEPTH else DECODER_WIDTH
            setattr(self, f"outconv{level}", nn.Conv2d(width, n_classes, 3, padding=1))
        _init_like_official(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = []
        for level, feature in enumerate(self.features(x), start=1):
            logits = getattr(self, f"outconv{level}")(feature)
            if level > 1:
                logits = F.interpolate(
                    logits, scale_factor=2 ** (level - 1), mode="bilinear", align_corners=False
                )
            outputs.append(torch.sigmoid(logits))
        return tuple(outputs)


@register("unet3p", family=FAMILY, source=SOURCE)
def build_unet3p() -> nn.Module:
    """The portrait model of the official train/predict scripts: RGB in, one foreground probability out."""
    return UNet3Plus(in_channels=3, n_classes=1)


@register("unet3p_deepsupervision", family=FAMILY, source=SOURCE)
def build_unet3p_deepsupervision() -> nn.Module:
    """The deep-supervision variant (commented out in the official scripts) with the same configuration."""
    return UNet3PlusDeepSup(in_channels=3, n_classes=1)
