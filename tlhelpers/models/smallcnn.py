"""A small convolutional network for CPU-sized experiments (the introduction's mini-lab).

It has the course's model interface (:mod:`tlhelpers.models.api`): ``forward_features`` maps images
to feature vectors (``model.backbone``), ``forward_head`` maps features to class scores
(``model.head``), and :meth:`SmallCNN.reset_classifier` swaps the head for a new task, which is the
first step of every fine-tuning recipe.
"""

from __future__ import annotations

from torch import Tensor, nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True), nn.MaxPool2d(2))


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU-pool blocks, global average pooling and a linear head.

    Args:
        num_classes: outputs of the head (at least 2).
        in_channels: image channels (3 for RGB, 1 for grey).
        width: channels of the first block; doubled in each next block.

    Shape:
        Input ``(B, in_channels, H, W)`` with H, W >= 8; output ``(B, num_classes)``.

    Example:
        >>> model = SmallCNN(num_classes=10)
        >>> model.reset_classifier(5)  # a new task with 5 classes
    """

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 32) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes={num_classes}: a classifier needs at least 2 classes.")
        self.backbone = nn.Sequential(
            _block(in_channels, width), _block(width, 2 * width), _block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.num_features = 4 * width
        self.head = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """Pooled feature vectors, shape ``(B, num_features)``."""
        return self.backbone(x)

    def forward_head(self, features: Tensor) -> Tensor:
        """Class scores of feature vectors, shape ``(B, num_classes)``."""
        return self.head(features)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Linear:
        """The head."""
        return self.head

    def reset_classifier(self, num_classes: int) -> nn.Linear:
        """Put a freshly initialised linear head for ``num_classes`` classes in place; return it.

        Raises:
            ValueError: if ``num_classes < 2``.
        """
        if num_classes < 2:
            raise ValueError(f"num_classes={num_classes}: a classifier needs at least 2 classes.")
        self.head = nn.Linear(self.num_features, num_classes).to(self.head.weight.device)
        return self.head

    def replace_head(self, num_classes: int) -> nn.Linear:
        """The former name of :meth:`reset_classifier` (chapter 0 uses it)."""
        return self.reset_classifier(num_classes)
