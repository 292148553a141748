"""The networks of the chapter: a small digit CNN, a domain discriminator, and ``DANN`` joining them.

The CNN follows the shape of the DANN paper's digit network (two 5x5 convolutions, then fully
connected layers) and exposes the course's backbone interface: ``forward_features`` gives the
feature vector the adaptation losses act on, ``head`` maps it to class scores.

Example:
    >>> import torch
    >>> model = DANN(DigitNet(num_classes=10))
    >>> model(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tlhelpers.domain.grl import GradientReversal


class DigitNet(nn.Module):
    """A small CNN for digit images: ``backbone`` (conv + fc) gives features, ``head`` gives logits.

    Args:
        num_classes: number of classes.
        in_channels: image channels (3 for every pair of the chapter).
        image_size: height and width of the square input.
        feature_dim: length of the feature vector.
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
        self.feature_dim = feature_dim
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

    def forward_features(self, x: Tensor) -> Tensor:
        """Feature vectors, shape ``(N, feature_dim)``."""
        return self.backbone(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x))


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

    ``model(x)`` returns class logits only, so :func:`tlhelpers.engine.evaluate` and ``predict``
    work unchanged; :func:`tlhelpers.domain.steps.dann_step` uses :meth:`domain_logits` for
    training. The discriminator is a submodule, so ``fit``'s default optimizer trains it too.

    Args:
        classifier: a network with ``forward_features`` and ``head`` (e.g. :class:`DigitNet`).
        discriminator: scores domains from features; a :class:`DomainDiscriminator` by default.
        gamma: steepness of the ``lambda`` ramp used by the training step.

    Raises:
        ValueError: if ``classifier`` lacks ``forward_features`` or ``head``.
    """

    def __init__(
        self, classifier: nn.Module, discriminator: nn.Module | None = None, gamma: float = 10.0
    ) -> None:
        super().__init__()
        if not (hasattr(classifier, "forward_features") and hasattr(classifier, "head")):
            raise ValueError(
                f"{type(classifier).__name__} has no forward_features/head; wrap it like DigitNet does."
            )
        dim = getattr(classifier, "feature_dim", None)
        if discriminator is None:
            if dim is None:
                raise ValueError("cannot size the discriminator; pass discriminator= or set classifier.feature_dim.")
            discriminator = DomainDiscriminator(dim)
        self.classifier = classifier
        self.discriminator = discriminator
        self.grl = GradientReversal(0.0)
        self.gamma = float(gamma)

    def forward_features(self, x: Tensor) -> Tensor:
        """The classifier's feature vectors."""
        return self.classifier.forward_features(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(x)

    def domain_logits(self, features: Tensor, lambda_: float) -> Tensor:
        """Domain logits of ``features`` seen through the GRL with strength ``lambda_``.

        Shape:
            ``(N, feature_dim)`` to ``(N,)``.
        """
        self.grl.lambda_ = float(lambda_)
        return self.discriminator(self.grl(features))


@torch.no_grad()
def domain_accuracy(logits: Tensor, is_target: Tensor) -> float:
    """Share of rows whose domain logit has the right sign (0.5 is chance for balanced batches)."""
    return ((logits > 0) == is_target.bool()).float().mean().item()
