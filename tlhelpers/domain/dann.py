"""The networks of the chapter: a small digit CNN, a domain discriminator, and ``DANN`` joining them.

The CNN follows the shape of the DANN paper's digit network (two 5x5 convolutions, then fully
connected layers) and has the course's model interface (:mod:`tlhelpers.models.api`):
``forward_features`` gives the feature vector the adaptation losses act on, ``forward_head`` maps it
to class scores. ``DANN`` wraps any model with that interface: a ``DigitNet``, a ``SmallCNN``, or a
torchvision classifier from :func:`tlhelpers.models.backbones.build_classifier` such as ResNet-50.

Example:
    >>> import torch
    >>> model = DANN(DigitNet(num_classes=10))
    >>> model(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from tlhelpers.domain.grl import GradientReversal
from tlhelpers.models import api as model_api


class DigitNet(nn.Module):
    """A small CNN for digit images: ``backbone`` (conv + fc) gives features, ``head`` (dropout + linear) logits.

    Args:
        num_classes: number of classes.
        in_channels: image channels (3 for every pair of the chapter).
        image_size: height and width of the square input.
        feature_dim: length of the feature vector (``num_features``).
        width: channels of the first convolution (the second has 1.5x); the paper's 32.

    Shape:
        Input ``(N, in_channels, image_size, image_size)``; output ``(N, num_classes)``.

    Raises:
        ValueError: if ``image_size`` is too small for two 5x5 convolutions with pooling.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 32,
        feature_dim: int = 128,
        width: int = 32,
    ) -> None:
        super().__init__()
        side = ((image_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"image_size={image_size} is too small for DigitNet; resize images to 28 or 32 pixels.")
        self.num_features = feature_dim
        wide = width * 3 // 2
        self.backbone = nn.Sequential(
            nn.Conv2d(in_channels, width, 5),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, wide, 5),
            nn.BatchNorm2d(wide),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(wide * side * side, feature_dim),
            nn.BatchNorm1d(feature_dim),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(feature_dim, num_classes))

    @property
    def feature_dim(self) -> int:
        """The former name of ``num_features``."""
        return self.num_features

    def forward_features(self, x: Tensor) -> Tensor:
        """Feature vectors, shape ``(N, num_features)``."""
        return self.backbone(x)

    def forward_head(self, features: Tensor) -> Tensor:
        """Class scores of feature vectors, shape ``(N, num_classes)``."""
        return self.head(features)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Linear:
        """The head's linear layer, ``head.1``."""
        # nn.Sequential's indexing is typed as Module; head.1 is always the nn.Linear set here
        return cast(nn.Linear, self.head[1])

    def reset_classifier(self, num_classes: int) -> nn.Linear:
        """A fresh linear layer for ``num_classes`` classes behind the head's dropout; returns it."""
        old = self.get_classifier()
        new = nn.Linear(old.in_features, num_classes, device=old.weight.device, dtype=old.weight.dtype)
        self.head[1] = new
        return new


class DomainDiscriminator(nn.Module):
    """An MLP that scores "this feature came from the target domain" (one logit per row).

    Args:
        in_features: length of the feature vectors.
        hidden: width of the two hidden layers.

    Shape:
        Input ``(N, in_features)``; output ``(N,)`` logits (source = 0, target = 1).
    """

    def __init__(self, in_features: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, 1),
        )

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features).squeeze(1)


class DANN(nn.Module):
    """A classifier plus a domain discriminator behind a gradient reversal layer.

    ``model(x)`` returns class logits only, so :func:`tlhelpers.training.engine.evaluate` and ``predict``
    work unchanged; :func:`tlhelpers.domain.steps.dann_step` uses :meth:`domain_logits` for
    training. The discriminator is a submodule, so ``fit``'s default optimizer trains it too.

    Args:
        classifier: any model of :mod:`tlhelpers.models.api`: a :class:`DigitNet`, a ``SmallCNN``,
            ``build_classifier("resnet50", 2).model``, ... (its own methods, or its linear head).
        discriminator: scores domains from features; a :class:`DomainDiscriminator` of the
            classifier's ``num_features`` by default.
        gamma: steepness of the ``lambda`` ramp used by the training step.

    Raises:
        ValueError: if ``classifier`` has neither ``forward_features``/``forward_head`` nor a linear head.
    """

    def __init__(
        self, classifier: nn.Module, discriminator: nn.Module | None = None, gamma: float = 10.0
    ) -> None:
        super().__init__()
        model_api.check_interface(classifier)
        if discriminator is None:
            discriminator = DomainDiscriminator(model_api.num_features(classifier))
        self.classifier = classifier
        self.discriminator = discriminator
        self.grl = GradientReversal(0.0)
        self.gamma = float(gamma)

    def forward_features(self, x: Tensor) -> Tensor:
        """The classifier's feature vectors, ``(N, num_features)``."""
        return model_api.forward_features(self.classifier, x)

    def forward_head(self, features: Tensor) -> Tensor:
        """The classifier's class scores of feature vectors."""
        return model_api.forward_head(self.classifier, features)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(x)

    @property
    def num_features(self) -> int:
        """Length of the classifier's feature vector."""
        return model_api.num_features(self.classifier)

    def get_classifier(self) -> nn.Module:
        """The classifier's head (not the discriminator)."""
        return model_api.get_head(self.classifier)

    def reset_classifier(self, num_classes: int) -> nn.Module:
        """A fresh head of the classifier for ``num_classes`` classes; the discriminator is kept. Returns it."""
        return model_api.reset_classifier(self.classifier, num_classes)

    def domain_logits(self, features: Tensor, lambda_: float) -> Tensor:
        """Domain logits of ``features`` seen through the GRL with strength ``lambda_``.

        Shape:
            ``(N, num_features)`` to ``(N,)``.
        """
        self.grl.lambda_ = float(lambda_)
        return self.discriminator(self.grl(features))


@torch.no_grad()
def domain_accuracy(logits: Tensor, is_target: Tensor) -> float:
    """Share of rows whose domain logit has the right sign (0.5 is chance for balanced batches)."""
    return ((logits > 0) == is_target.bool()).float().mean().item()
