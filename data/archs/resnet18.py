"""The competition's model: torchvision's ResNet-18 (ImageNet stem), trained from scratch."""

from torch import nn
from torchvision.models import resnet18


def build(num_classes: int) -> nn.Module:
    return resnet18(weights=None, num_classes=num_classes)
