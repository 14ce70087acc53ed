"""ISNet, the segmentation network of DIS (Qin et al., 2022), as deployed in isnet-general-use.

Written after class ``ISNetDIS`` of xuebinqin/DIS, ``IS-Net/models/isnet.py``. It is U^2-Net's
nested U-Net (:class:`.u2net.NestedUNet`, same RSU stages and channel widths) behind a stride-2
3x3 stem ``conv_in`` (3 -> 64, with bias, no batch-norm), so every stage runs at half the
resolution of U^2-Net's; there is no fusion ``outconv``: the prediction is the first side output
upsampled to the input size. (The official class also declares a ``pool_in`` it never calls; it
has no parameters, so leaving it out changes neither keys nor outputs.) The ISNet ground-truth
encoder used only for training is not part of the inference network and is not built here.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import register
from .u2net import NestedUNet, upsample_like

SOURCE = "https://github.com/xuebinqin/DIS"


class ISNet(NestedUNet):
    """``ISNetDIS(3, 1)``: returns ``([sigmoid(d1), ..., sigmoid(d6)], [hx1d, ..., hx5d, hx6])``.

    Every ``d_k`` is ``N x 1 x H x W`` (input size); ``outputs[0][0]`` is the prediction. The second
    list holds the decoder feature maps the official training loop supervises with the GT encoder.
    """

    def __init__(self) -> None:
        encoder = [(64, 32, 64), (64, 32, 128), (128, 64, 256), (256, 128, 512), (512, 256, 512), (512, 256, 512)]
        decoder = [(128, 16, 64), (256, 32, 64), (512, 64, 128), (1024, 128, 256), (1024, 256, 512)]
        super().__init__(encoder, decoder)
        self.conv_in = nn.Conv2d(3, 64, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        logits, features = self.side_logits(self.conv_in(x))
        return [torch.sigmoid(upsample_like(d, x)) for d in logits], features


@register("isnet", family="isnet", source=SOURCE)
def build_isnet() -> nn.Module:
    """The inference network of isnet-general-use (``isnet-general-use.pth`` is a plain state_dict of it)."""
    return ISNet()
