"""A narrow four-stage ResNet for CPU-sized runs: the reduced-mode stand-in for ResNet-50.

It has the same layout and names as torchvision's ResNets (``conv1, bn1, layer1 ... layer4, fc``),
built from torchvision's own ``BasicBlock``, so freezing ``layer4``, discriminative learning rates
and head replacement work on it exactly as on ``resnet50``. It is about 60 times smaller than
ResNet-18 (widths 16-128, one block per stage) and keeps more resolution for small images (a
stride-2 stem and no max-pool), so a 64-pixel image still reaches ``layer1`` at 32x32.

Build it by name like any other: ``build_classifier("mini_resnet", num_classes=10, weights=None)``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock


def _stage(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or c_in != c_out:
        downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
    return nn.Sequential(BasicBlock(c_in, c_out, stride, downsample))


class MiniResNet(nn.Module):
    """ResNet with one ``BasicBlock`` per stage and torchvision's attribute names.

    Args:
        num_classes: outputs of ``fc``.
        widths: channels of ``layer1`` to ``layer4``.

    Shape:
        Input ``(B, 3, H, W)`` with H, W >= 16; output ``(B, num_classes)``.
    """

    def __init__(self, num_classes: int = 1000, widths: Sequence[int] = (16, 32, 64, 128)) -> None:
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"widths={tuple(widths)} must list 4 stage widths, e.g. (16, 32, 64, 128).")
        self.conv1 = nn.Conv2d(3, widths[0], 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _stage(widths[0], widths[0], 1)
        self.layer2 = _stage(widths[0], widths[1], 2)
        self.layer3 = _stage(widths[1], widths[2], 2)
        self.layer4 = _stage(widths[2], widths[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: Tensor) -> Tensor:
        """Pooled ``layer4`` features, shape ``(B, num_features)``."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)

    def forward_head(self, features: Tensor) -> Tensor:
        """Class scores of feature vectors (``fc``)."""
        return self.fc(features)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    @property
    def num_features(self) -> int:
        """Length of the feature vector (``layer4``'s channels)."""
        return self.fc.in_features

    def get_classifier(self) -> nn.Linear:
        """The head, ``fc``."""
        return self.fc

    def reset_classifier(self, num_classes: int) -> nn.Linear:
        """A fresh ``fc`` for ``num_classes`` classes on the same device and dtype; returns it."""
        self.fc = nn.Linear(self.fc.in_features, num_classes, device=self.fc.weight.device, dtype=self.fc.weight.dtype)
        return self.fc


def mini_resnet(num_classes: int = 1000, **kwargs: object) -> MiniResNet:
    """Build a :class:`MiniResNet` (the signature torchvision builders have; no pretrained weights)."""
    return MiniResNet(num_classes, **kwargs)  # type: ignore[arg-type]
