"""The paper's models, plus a small CNN for scikit-learn's 8x8 digits.

All take inputs in [0, 1] and return logits; any normalisation lives inside the model.
"""

import torch.nn.functional as F
from torch import Tensor, nn


class DigitsCNN(nn.Module):
    """A small CNN for 1x8x8 digits: two 3x3 convolutions, a max-pool, two linear layers.

    Examples:
        >>> import torch
        >>> DigitsCNN()(torch.rand(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(self, classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * 16, 128), nn.ReLU(), nn.Linear(128, classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class MnistCNN(nn.Module):
    """The paper's MNIST model: 2 conv (32, 64 filters, 5x5, pad 2, ReLU, 2x2 max-pool), FC 1024.

    Examples:
        >>> import torch
        >>> MnistCNN()(torch.rand(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 7 * 7, 1024), nn.ReLU(), nn.Linear(1024, classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class PreActBlock(nn.Module):
    """A pre-activation residual block (He et al., 2016)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = (
            nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None
        )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + skip


class PreActResNet18(nn.Module):
    """PreAct ResNet-18 for 3x32x32 inputs (the paper's CIFAR-10 / CIFAR-100 model).

    Examples:
        >>> import torch
        >>> PreActResNet18(classes=100)(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 100])
    """

    def __init__(self, classes: int = 10, channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 64, 3, 1, 1, bias=False)
        layers: list[nn.Module] = []
        cin = 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [PreActBlock(cin, cout, stride), PreActBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512, classes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn(self.layers(self.conv1(x))))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)
