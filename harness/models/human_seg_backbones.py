"""Encoders of the ``human_seg`` family, named as ``thuyngch/Human-Segmentation-PyTorch`` names them.

The official repository keeps its encoders under ``models/backbonds/`` and every segmentation
network stores one as ``self.backbone``; its checkpoints therefore carry keys such as
``backbone.layer1.0.conv1.weight`` or ``backbone.features.3.conv.4.weight``. The modules here
reproduce exactly those child names (and nothing more: the classification heads are left out,
as the segmentation networks build their encoders with ``num_classes=None``) so that an official
``state_dict`` loads with ``strict=True``.

Public API (other ``human_seg`` modules import it; keep it stable):

``resnet18_backbone(output_stride=32) -> ResNetBackbone``
    Children ``conv1, bn1, relu, maxpool, layer1..layer4``. ``forward(x)`` returns the last stage;
    ``stages(x)`` returns the five stage outputs ``(stage1, ..., stage5)`` at strides
    2, 4, 8, 16, 32 (``output_stride`` 16 or 8 trades the last strides for dilation).
    Note the official stem pools with a 2x2/2 max-pool, not torchvision's 3x3/2.
``BasicBlock(inplanes, planes, stride=1, downsample=None, dilation=1)``, ``conv1x1``, ``conv3x3``
    The residual unit and convolutions, reused by decoders that the repository builds from them.
``mobilenetv2_backbone() -> MobileNetV2Backbone``
    Child ``features`` (19 entries), attribute ``last_channel`` (1280), ``stages(x)`` as above.
``InvertedResidual(inp, oup, stride, expansion)`` and ``make_divisible``
    MobileNetV2's unit and channel rounding, reused by the UNet decoder.
``init_like_upstream(model)``
    The initialisation every network of the repository applies to itself last (He-normal,
    fan-out convolutions with zeroed biases; unit/zero BatchNorm; transposed convolutions keep
    PyTorch's default), so a seeded build draws from the same distributions as upstream.
"""

from __future__ import annotations

from torch import Tensor, nn

# Where each of the five stages of MobileNetV2 ends in ``features`` (exclusive), as the official
# UNet slices it: stride 2, 4, 8, 16 and 32.
_MOBILENETV2_STAGE_ENDS = (2, 4, 7, 14, 19)

# (expansion, output channels, repeats, stride of the first repeat) of MobileNetV2's bottlenecks;
# ``None`` marks "the network's expansion factor" (the first group never expands).
_MOBILENETV2_SETTING: tuple[tuple[int | None, int, int, int], ...] = (
    (1, 16, 1, 1),
    (None, 24, 2, 2),
    (None, 32, 3, 2),
    (None, 64, 4, 2),
    (None, 96, 3, 1),
    (None, 160, 3, 2),
    (None, 320, 1, 1),
)

# Per output stride: stride and base dilation of layer1..layer4.
_RESNET_SCHEDULE: dict[int, tuple[tuple[int, int], ...]] = {
    32: ((1, 1), (2, 1), (2, 1), (2, 1)),
    16: ((1, 1), (2, 1), (2, 1), (1, 2)),
    8: ((1, 1), (2, 1), (1, 2), (1, 4)),
}


def init_like_upstream(model: nn.Module) -> None:
    """Re-initialise ``model`` in place the way the repository's ``_init_weights`` does."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    """Bias-free 3x3 convolution whose padding keeps the size for any dilation."""
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """Bias-free pointwise convolution (projection shortcuts and channel reductions)."""
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """ResNet's two-convolution residual unit; ``downsample`` projects the shortcut when needed."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes, dilation=dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + shortcut)


def _resnet_layer(inplanes: int, planes: int, blocks: int, stride: int, dilation: int) -> nn.Sequential:
    """One ResNet stage. A dilated stage grows its dilation 2x per block ("multi-grid"), as upstream does."""
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(conv1x1(inplanes, planes, stride), nn.BatchNorm2d(planes))
    dilations = [dilation * 2**i for i in range(blocks)] if dilation != 1 else [1] * blocks
    units = [BasicBlock(inplanes, planes, stride, downsample, dilations[0])]
    units += [BasicBlock(planes, planes, dilation=d) for d in dilations[1:]]
    return nn.Sequential(*units)


class ResNetBackbone(nn.Module):
    """ResNet-18/34 encoder without its classifier, exposing the five stage outputs."""

    def __init__(self, blocks_per_layer: tuple[int, int, int, int], output_stride: int = 32) -> None:
        super().__init__()
        if output_stride not in _RESNET_SCHEDULE:
            raise ValueError(f"output_stride must be one of {sorted(_RESNET_SCHEDULE)}, got {output_stride}")
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2)
        widths = (64, 128, 256, 512)
        inplanes = 64
        for index, (blocks, planes, (stride, dilation)) in enumerate(
            zip(blocks_per_layer, widths, _RESNET_SCHEDULE[output_stride]), start=1
        ):
            self.add_module(f"layer{index}", _resnet_layer(inplanes, planes, blocks, stride, dilation))
            inplanes = planes

    def stages(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Stem output (stride 2) and the outputs of ``layer1..layer4``: the decoders' skip inputs."""
        stage1 = self.relu(self.bn1(self.conv1(x)))
        stage2 = self.layer1(self.maxpool(stage1))
        stage3 = self.layer2(stage2)
        stage4 = self.layer3(stage3)
        stage5 = self.layer4(stage4)
        return stage1, stage2, stage3, stage4, stage5

    def forward(self, x: Tensor) -> Tensor:
        return self.stages(x)[-1]


def resnet18_backbone(output_stride: int = 32) -> ResNetBackbone:
    """The repository's ``ResNet.resnet18(num_classes=None, output_stride=...)``, classifier-free."""
    return ResNetBackbone((2, 2, 2, 2), output_stride)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor``, never losing more than 10% of it."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _conv_bn_relu6(inp: int, oup: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(inp, oup, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU6(inplace=True),
    ]


class InvertedResidual(nn.Module):
    """MobileNetV2 bottleneck: (expand 1x1) -> depthwise 3x3 -> linear 1x1, residual when shapes allow.

    All layers sit in one ``conv`` Sequential, so the indices (and thus checkpoint keys) shift
    by three when ``expansion == 1`` drops the expanding convolution.
    """

    def __init__(self, inp: int, oup: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = round(inp * expansion)
        layers = _conv_bn_relu6(inp, hidden, 1) if expansion != 1 else []
        layers += _conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden)
        layers += [nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and inp == oup

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        return x + y if self.use_res_connect else y


class MobileNetV2Backbone(nn.Module):
    """MobileNetV2 (width ``alpha``) without its classifier; ``features`` holds all 19 layers."""

    def __init__(self, alpha: float = 1.0, expansion: int = 6) -> None:
        super().__init__()
        channels = make_divisible(32 * alpha)
        self.last_channel = make_divisible(1280 * alpha) if alpha > 1.0 else 1280
        layers: list[nn.Module] = [nn.Sequential(*_conv_bn_relu6(3, channels, 3, stride=2))]
        for t, c, n, s in _MOBILENETV2_SETTING:
            out = make_divisible(int(c * alpha))
            for i in range(n):
                layers.append(InvertedResidual(channels, out, s if i == 0 else 1, expansion if t is None else t))
                channels = out
        layers.append(nn.Sequential(*_conv_bn_relu6(channels, self.last_channel, 1)))
        self.features = nn.Sequential(*layers)

    def stages(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Outputs at strides 2, 4, 8, 16 and 32 (the last one has ``last_channel`` channels)."""
        outputs = []
        start = 0
        for end in _MOBILENETV2_STAGE_ENDS:
            for layer in self.features[start:end]:
                x = layer(x)
            outputs.append(x)
            start = end
        return tuple(outputs)  # type: ignore[return-value]

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


def mobilenetv2_backbone(alpha: float = 1.0, expansion: int = 6) -> MobileNetV2Backbone:
    """The repository's ``MobileNetV2(alpha, expansion, num_classes=None)``."""
    return MobileNetV2Backbone(alpha, expansion)
