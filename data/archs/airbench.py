"""The `airbench` preset's net: the architecture of Keller Jordan's airbench94 (arXiv 2404.00498), for fast GPU banks.

A 2x2 patch convolution of 24 channels, then three groups (conv 3x3, max-pool 2, BatchNorm, GELU,
conv 3x3, BatchNorm, GELU) of widths 64, 256, 256, a 3x3 max-pool and a bias-free linear head whose
logits are scaled by 1/9: 1.97M parameters, about 118M multiply-adds per 32x32 image. Deviations,
so that every parameter is an ordinary trainable one that any unlearning method can change: the
first layer is learned from a standard initialisation (airbench freezes it to a whitening of the
training images, which would make the original's first layer depend on the forget set), BatchNorm
weights train (airbench freezes them at 1), and there is no dirac initialisation.
"""

import torch
from torch import nn


def _group(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.MaxPool2d(2),
        nn.BatchNorm2d(cout),
        nn.GELU(),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.GELU(),
    )


class AirbenchNet(nn.Module):
    """airbench94's network with ordinary trainable layers (module docstring)."""

    def __init__(self, num_classes: int = 10, widths=(64, 256, 256)):
        super().__init__()
        self.whiten = nn.Sequential(nn.Conv2d(3, 24, 2), nn.GELU())  # 32 -> 31
        w1, w2, w3 = widths
        self.layers = nn.Sequential(_group(24, w1), _group(w1, w2), _group(w2, w3))  # 31 -> 15 -> 7 -> 3
        self.pool = nn.MaxPool2d(3)
        self.fc = nn.Linear(w3, num_classes, bias=False)

    def forward(self, x):
        x = self.pool(self.layers(self.whiten(x)))
        return self.fc(torch.flatten(x, 1)) / 9  # airbench's logit scale: softer outputs at initialisation


def build(num_classes: int) -> nn.Module:
    return AirbenchNet(num_classes)
