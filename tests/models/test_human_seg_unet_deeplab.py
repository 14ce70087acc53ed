"""``human_seg`` family, part 1: UNet-MobileNetV2, UNet-ResNet18, DeepLabV3+-ResNet18.

The key lists in ``tests/data/official_keys/*.json`` were dumped from instances of the
official ``thuyngch/Human-Segmentation-PyTorch`` definitions (models/UNet.py, models/DeepLab.py,
models/backbonds/{ResNet,MobileNetV2}.py), not from the harness's own modules; keys, shapes, strict
loading and exact parameter counts against them are checked in ``test_official_keys.py``.

Documented figures (seed and repository README, 1x3x320x320) and how they compare:

* parameters: all three agree with the official networks within 0.5%
  (4,683,331; 16,613,179; 16,603,298). DeepLabV3+'s 16.6 M is right, not a copy.
* FLOPs: the README counts conv multiply-accumulates and skips ``ConvTranspose2d``: that gives the
  UNets' 1.3 G and 9.1 G (1.25 G and 9.07 G MACs). DeepLabV3+'s 9.1 G is UNet_ResNet18's copied:
  the official network has 12.38 G MACs. ``count_flops`` (multiply-add = 2, all convolutions)
  measures the values in ``MEASURED_GFLOPS``.
"""

from __future__ import annotations

import pytest
import torch

from harness.models import build, get
from harness.models.human_seg_backbones import mobilenetv2_backbone, resnet18_backbone
from harness.models.profile import count_flops, count_params

SEED_SHAPE = (1, 3, 320, 320)
NUM_CLASSES = 2

# Seed's documented parameter counts (millions).
DOCUMENTED_PARAMS_M = {
    "unet_mobilenetv2": 4.7,
    "unet_resnet18": 16.6,
    "deeplabv3plus_resnet18": 16.6,
}
# Seed's documented FLOPs, for the record: they are conv MACs without transposed convolutions,
# and the DeepLabV3+ row repeats UNet_ResNet18's, so they are not asserted.
DOCUMENTED_GFLOPS = {
    "unet_mobilenetv2": 1.3,
    "unet_resnet18": 9.1,
    "deeplabv3plus_resnet18": 9.1,
}
# count_flops at SEED_SHAPE, measured once on the official definitions and on these modules.
MEASURED_GFLOPS = {
    "unet_mobilenetv2": 3.0595,
    "unet_resnet18": 20.2337,
    "deeplabv3plus_resnet18": 24.7630,
}
ARCHITECTURES = sorted(DOCUMENTED_PARAMS_M)


@pytest.fixture(scope="module", params=ARCHITECTURES)
def arch(request: pytest.FixtureRequest) -> tuple[str, torch.nn.Module]:
    torch.manual_seed(0)
    return request.param, build(request.param)


def test_registered_in_family(arch: tuple[str, torch.nn.Module]) -> None:
    name, _ = arch
    assert get(name).family == "human_seg"


def test_param_count_matches_documented(arch: tuple[str, torch.nn.Module]) -> None:
    name, model = arch
    params = count_params(model)
    assert params == pytest.approx(DOCUMENTED_PARAMS_M[name] * 1e6, rel=0.02)


@pytest.mark.parametrize("size", [(64, 64), (64, 96)])
def test_forward_returns_logits_at_input_size(arch: tuple[str, torch.nn.Module], size: tuple[int, int]) -> None:
    _, model = arch
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    assert isinstance(out, torch.Tensor), "one tensor of logits, no auxiliary outputs"
    assert out.shape == (1, NUM_CLASSES, *size)
    assert torch.isfinite(out).all()
    # Raw logits: no softmax inside the network.
    assert not torch.allclose(out.sum(dim=1), torch.ones(size), atol=1e-3)


def test_flops_at_seed_shape(arch: tuple[str, torch.nn.Module]) -> None:
    name, model = arch
    gflops = count_flops(model, SEED_SHAPE) / 1e9
    print(f"{name}: {gflops:.3f} GFLOPs at {SEED_SHAPE} (documented {DOCUMENTED_GFLOPS[name]} G)")
    assert gflops == pytest.approx(MEASURED_GFLOPS[name], rel=0.01)


def test_build_is_deterministic_under_a_seed(arch: tuple[str, torch.nn.Module]) -> None:
    name, model = arch
    torch.manual_seed(0)
    again = build(name)
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[key]), key


def test_deeplab_aspp_sees_stride_32_like_models_deeplab_py() -> None:
    """models/DeepLab.py builds the ResNet at its default output stride 32 despite ``output_stride=16``."""
    model = build("deeplabv3plus_resnet18")
    deepest = model.backbone.stages(torch.zeros(1, 3, 64, 64))[-1]
    assert deepest.shape[-2:] == (2, 2)


@pytest.mark.parametrize(("output_stride", "deepest_side"), [(32, 2), (16, 4), (8, 8)])
def test_resnet18_backbone_stage_strides(output_stride: int, deepest_side: int) -> None:
    stages = resnet18_backbone(output_stride).stages(torch.zeros(1, 3, 64, 64))
    assert [s.shape[1] for s in stages] == [64, 64, 128, 256, 512]
    assert [s.shape[-1] for s in stages[:3]] == [32, 16, 8]
    assert stages[-1].shape[-1] == deepest_side


def test_mobilenetv2_backbone_stages() -> None:
    stages = mobilenetv2_backbone().stages(torch.zeros(1, 3, 64, 64))
    assert [s.shape[1] for s in stages] == [16, 24, 32, 96, 1280]
    assert [s.shape[-1] for s in stages] == [32, 16, 8, 4, 2]
