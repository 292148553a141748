"""A narrow VGG16 for CPU-sized runs: the reduced-mode stand-in for VGG16.

It keeps VGG16's layout to the index: ``features`` holds 13 ``Conv2d`` + ``ReLU`` pairs in five
blocks of 2, 2, 3, 3, 3 convolutions, each block closed by a ``MaxPool2d``, so ``features.22`` is
the ReLU of ``conv4_3``, ``features.29`` that of ``conv5_3`` and ``features.30`` is ``pool5``, as
in torchvision's ``vgg16``; ``classifier`` is ``Linear, ReLU, Dropout, Linear, ReLU, Dropout,
Linear``, so ``classifier.1`` is ``fc6``, ``classifier.4`` is ``fc7`` and ``classifier.6`` the head.
What changes is the size: channels 16-128 instead of 64-512, a 256-wide classifier instead of
4096, and a 1x1 ``avgpool`` instead of 7x7 (a 32-pixel image leaves a 1x1 map after ``pool5``),
about 0.4 M parameters instead of 138 M.

Build it by name like any other: ``build_classifier("mini_vgg", num_classes=10, weights=None)``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

#: Convolutions per block in VGG16 (configuration "D" of the VGG paper).
VGG16_BLOCKS: tuple[int, ...] = (2, 2, 3, 3, 3)


def vgg_features(widths: Sequence[int], blocks: Sequence[int] = VGG16_BLOCKS) -> nn.Sequential:
    """VGG's convolutional part: per block, ``blocks[b]`` 3x3 ``Conv2d`` + ``ReLU``, then a 2x2 ``MaxPool2d``.

    Args:
        widths: output channels of each block.
        blocks: convolutions per block.

    Raises:
        ValueError: if ``widths`` and ``blocks`` differ in length.
    """
    if len(widths) != len(blocks):
        raise ValueError(f"widths={tuple(widths)} needs one width per block of {tuple(blocks)}; pass {len(blocks)} widths.")
    layers: list[nn.Module] = []
    c_in = 3
    for width, n_convs in zip(widths, blocks):
        for _ in range(n_convs):
            layers += [nn.Conv2d(c_in, width, 3, padding=1), nn.ReLU(inplace=True)]
            c_in = width
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


class MiniVGG(nn.Module):
    """VGG16's modules and indices at CPU size: ``features``, ``avgpool``, ``classifier``.

    Args:
        num_classes: outputs of ``classifier.6``.
        widths: channels of the five blocks.
        hidden: width of ``fc6`` and ``fc7``.
        dropout: dropout after ``fc6`` and after ``fc7``.
        pool_size: side of the map ``avgpool`` leaves (VGG16: 7).

    Shape:
        Input ``(B, 3, H, W)`` with H, W >= 32 (five 2x2 max-pools); output ``(B, num_classes)``.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        widths: Sequence[int] = (16, 32, 64, 128, 128),
        hidden: int = 256,
        dropout: float = 0.5,
        pool_size: int = 1,
    ) -> None:
        super().__init__()
        if len(widths) != len(VGG16_BLOCKS):
            raise ValueError(f"widths={tuple(widths)} must list 5 block widths, e.g. (16, 32, 64, 128, 128).")
        self.features = vgg_features(widths)
        self.avgpool = nn.AdaptiveAvgPool2d(pool_size)
        self.classifier = nn.Sequential(
            nn.Linear(widths[-1] * pool_size * pool_size, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        # torchvision's VGG initialisation
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def mini_vgg(num_classes: int = 1000, **kwargs: object) -> MiniVGG:
    """Build a :class:`MiniVGG` (the signature torchvision builders have; no pretrained weights)."""
    return MiniVGG(num_classes, **kwargs)  # type: ignore[arg-type]
