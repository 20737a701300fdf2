"""The `cpu` preset's 3-block ResNet for 32x32 inputs (78k parameters at width 16)."""

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock


def _downsample(cin: int, cout: int, stride: int):
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class SmallResNet(nn.Module):
    """A 3-block ResNet for 32x32 inputs: stride-2 stem, BasicBlocks of width w, 2w, 4w (78k params at w=16)."""

    def __init__(self, num_classes: int = 10, width: int = 16):
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True))
        self.layer1 = BasicBlock(w, w)  # 16x16
        self.layer2 = BasicBlock(w, 2 * w, 2, _downsample(w, 2 * w, 2))  # 8x8
        self.layer3 = BasicBlock(2 * w, 4 * w, 2, _downsample(2 * w, 4 * w, 2))  # 4x4
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * w, num_classes)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def build(num_classes: int) -> nn.Module:
    return SmallResNet(num_classes)
