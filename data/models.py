"""Architectures, by name: the competition's ResNet-18 and two small nets for CPUs and tests."""
import torch
from torch import nn
from torchvision.models import resnet18 as tv_resnet18
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
        self.layer1 = BasicBlock(w, w)                                              # 16x16
        self.layer2 = BasicBlock(w, 2 * w, 2, _downsample(w, 2 * w, 2))             # 8x8
        self.layer3 = BasicBlock(2 * w, 4 * w, 2, _downsample(2 * w, 4 * w, 2))     # 4x4
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * w, num_classes)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class TinyCNN(nn.Module):
    """Two conv layers with BatchNorm and a linear head: for tests, trains in seconds."""

    def __init__(self, num_classes: int = 10, width: int = 8):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, 2, 1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))


ARCHITECTURES = {
    "resnet18": lambda num_classes: tv_resnet18(weights=None, num_classes=num_classes),
    "small_resnet": lambda num_classes: SmallResNet(num_classes),
    "tiny_cnn": lambda num_classes: TinyCNN(num_classes),
}


def build_model(arch: str, num_classes: int) -> nn.Module:
    """A freshly initialised model of architecture `arch`."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch](num_classes)
