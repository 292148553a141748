"""A narrow VGG16 for CPU-sized runs: the reduced-mode stand-in for VGG16.

It keeps VGG16's layout to the index: ``features`` holds 13 ``Conv2d`` + ``ReLU`` pairs in five
blocks of 2, 2, 3, 3, 3 convolutions, each block closed by a ``MaxPool2d``, so ``features.22`` is
the ReLU of ``conv4_3``, ``features.29`` that of ``conv5_3`` and ``features.30`` is ``pool5``, as
in torchvision's ``vgg16``; ``classifier`` is ``Linear, ReLU, Dropout, Linear, ReLU, Dropout,
Linear``, so ``classifier.1`` is ``fc6``, ``classifier.4`` is ``fc7`` and ``classifier.6`` the head.
What changes is the size: channels 16-128 instead of 64-512, a 256-wide classifier instead of
4096, and a 1x1 ``avgpool`` instead of 7x7 (a 32-pixel image leaves a 1x1 map after ``pool5``),
about 1 M parameters instead of 138 M.

One thing is added. VGG16 has no normalisation layers, and a plain 13-layer ReLU network trained
from scratch for a few hundred steps barely leaves chance level (VGG's authors started the deep
configurations from a shallower trained one). Each convolution here therefore *standardises its
weights* (zero mean, unit variance per filter, scaled for ReLU; Qiao et al. 2019, Brock et al.
2021) through a ``torch.nn.utils.parametrize`` parametrization: the modules, their indices and the
graph nodes stay those of VGG16, and the proxy pretraining reaches about 40 % on its own task in
that time instead of 10 %.

Build it by name like any other: ``build_classifier("mini_vgg", num_classes=10, weights=None)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

from torch import Tensor, nn
from torch.nn.utils import parametrize

#: Convolutions per block in VGG16 (configuration "D" of the VGG paper).
VGG16_BLOCKS: tuple[int, ...] = (2, 2, 3, 3, 3)


class StandardizedWeight(nn.Module):
    """Weight standardisation as a parametrization: each filter gets zero mean and variance ``2 / fan_in``.

    The gain ``sqrt(2 / (1 - 1/pi))`` keeps a ReLU network's activations at unit scale through the
    layers (the mean-shift-corrected He gain of Brock et al. 2021).
    """

    gain = math.sqrt(2 / (1 - 1 / math.pi))

    def forward(self, weight: Tensor) -> Tensor:
        flat = weight.flatten(1)
        mean = flat.mean(1).view(-1, 1, 1, 1)
        var = flat.var(1, unbiased=False).view(-1, 1, 1, 1)
        return (weight - mean) * (var * flat.shape[1] + 1e-4).rsqrt() * self.gain


def vgg_features(
    widths: Sequence[int], blocks: Sequence[int] = VGG16_BLOCKS, *, standardize: bool = True,
) -> nn.Sequential:
    """VGG's convolutional part: per block, ``blocks[b]`` 3x3 ``Conv2d`` + ``ReLU``, then a 2x2 ``MaxPool2d``.

    Args:
        widths: output channels of each block.
        blocks: convolutions per block.
        standardize: parametrize each conv's weight with :class:`StandardizedWeight`.

    Raises:
        ValueError: if ``widths`` and ``blocks`` differ in length.
    """
    if len(widths) != len(blocks):
        raise ValueError(f"widths={tuple(widths)} needs one width per block of {tuple(blocks)}; pass {len(blocks)} widths.")
    layers: list[nn.Module] = []
    c_in = 3
    for width, n_convs in zip(widths, blocks):
        for _ in range(n_convs):
            conv = nn.Conv2d(c_in, width, 3, padding=1)
            if standardize:
                parametrize.register_parametrization(conv, "weight", StandardizedWeight())
            layers += [conv, nn.ReLU(inplace=True)]
            c_in = width
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


class MiniVGG(nn.Module):
    """VGG16's modules and indices at CPU size: ``features``, ``avgpool``, ``classifier``.

    Args:
        num_classes: outputs of ``classifier.6``.
        widths: channels of the five blocks.
        hidden: width of ``fc6`` and ``fc7``.
        dropout: dropout after ``fc6`` and after ``fc7`` (VGG16: 0.5, which slows a short pretraining).
        pool_size: side of the map ``avgpool`` leaves (VGG16: 7).
        standardize: standardise the conv weights (False: plain VGG convolutions).

    Shape:
        Input ``(B, 3, H, W)`` with H, W >= 32 (five 2x2 max-pools); output ``(B, num_classes)``.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        widths: Sequence[int] = (16, 32, 64, 128, 128),
        hidden: int = 256,
        dropout: float = 0.0,
        pool_size: int = 1,
        standardize: bool = True,
    ) -> None:
        super().__init__()
        if len(widths) != len(VGG16_BLOCKS):
            raise ValueError(f"widths={tuple(widths)} must list 5 block widths, e.g. (16, 32, 64, 128, 128).")
        self.features = vgg_features(widths, standardize=standardize)
        self.avgpool = nn.AdaptiveAvgPool2d(pool_size)
        self.classifier = nn.Sequential(
            nn.Linear(widths[-1] * pool_size * pool_size, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        # He initialisation for the (unstandardised) convs; PyTorch's default for the Linears
        for m in self.features:
            if isinstance(m, nn.Conv2d) and not standardize:
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if isinstance(m, nn.Conv2d) and m.bias is not None:  # vgg_features' convs all have one
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """The features the head (``classifier.6``) sees: ``fc7`` after its ReLU and dropout, ``(B, num_features)``."""
        x = self.avgpool(self.features(x)).flatten(1)
        for layer in list(self.classifier)[:6]:  # each a submodule: graph nodes keep their names (classifier.4)
            x = layer(x)
        return x

    def forward_head(self, features: Tensor) -> Tensor:
        """Class scores of feature vectors (``classifier.6``)."""
        return self.classifier[6](features)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    @property
    def num_features(self) -> int:
        """Length of the feature vector (the width of ``fc7``)."""
        return self.get_classifier().in_features

    def get_classifier(self) -> nn.Linear:
        """The head, ``classifier.6``."""
        # nn.Sequential's indexing is typed as Module; classifier.6 is always the nn.Linear set here
        return cast(nn.Linear, self.classifier[6])

    def reset_classifier(self, num_classes: int) -> nn.Linear:
        """A fresh ``classifier.6`` for ``num_classes`` classes on the same device and dtype; returns it."""
        old = self.get_classifier()
        new = nn.Linear(old.in_features, num_classes, device=old.weight.device, dtype=old.weight.dtype)
        self.classifier[6] = new
        return new


def mini_vgg(num_classes: int = 1000, **kwargs: object) -> MiniVGG:
    """Build a :class:`MiniVGG` (the signature torchvision builders have; no pretrained weights)."""
    return MiniVGG(num_classes, **kwargs)  # type: ignore[arg-type]
