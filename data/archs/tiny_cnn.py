"""The `tiny` preset's net: two conv layers with BatchNorm and a linear head, trains in seconds (tests)."""

from torch import nn


class TinyCNN(nn.Module):
    """Two conv layers with BatchNorm and a linear head: for tests, trains in seconds."""

    def __init__(self, num_classes: int = 10, width: int = 8):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, 2, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, 2, 1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))


def build(num_classes: int) -> nn.Module:
    return TinyCNN(num_classes)
