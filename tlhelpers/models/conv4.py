"""The standard Conv-4 backbone of few-shot learning (``Conv4``).

Four blocks of 3x3 convolution (64 channels), BatchNorm, ReLU and 2x2 max-pooling: a 1x28x28
Omniglot image becomes a 64-dimensional embedding, a 3x84x84 miniImageNet image a 1600-dimensional
one (Vinyals et al. 2016; Snell et al. 2017; Finn et al. 2017).

BatchNorm here keeps no running statistics: it always normalises with the statistics of the batch
it sees, in training and at test time. For meta-learning that is the right choice, not a shortcut:
each task adapts its own copy of the weights, and running means shared across tasks would be
mutated by every task (``torch.func`` transforms also refuse that in-place update). MAML's own
code does the same.

``BatchStatNorm2d`` has two forms with the same value and first derivatives. By default it calls
the fused ``F.batch_norm`` kernel (as fast as ``nn.BatchNorm2d``). Under ``torch.func.vmap`` that
kernel's backward rule gives wrong *second* derivatives (pytorch/functorch issue 534), which would
silently corrupt second-order MAML; inside :func:`exact_batchnorm` the layer is written with plain
tensor operations instead, which differentiate exactly to any order but cost about twice the time
of a training step. ``maml.meta_gradient`` switches to the exact form for second-order MAML only.

Example:
    >>> model = Conv4(in_channels=1, num_classes=5)
    >>> model(torch.zeros(10, 1, 28, 28)).shape
    torch.Size([10, 5])
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tlhelpers.training.freezing import count_parameters

__all__ = ["BatchStatNorm2d", "Conv4", "conv_block", "count_parameters", "exact_batchnorm"]


class BatchStatNorm2d(nn.Module):
    """BatchNorm that always uses the current batch's statistics; fused, or exact to any order.

    Equal to ``nn.BatchNorm2d(channels, track_running_stats=False)`` in value and gradient. With
    ``exact`` False (the default) it runs the fused ``F.batch_norm`` kernel; with ``exact`` True
    (set it with :func:`exact_batchnorm`) it uses plain operations, whose higher-order derivatives
    are exact under ``torch.func.vmap`` as well.

    Args:
        channels: number of channels.
        eps: added to the variance.

    Shape:
        input and output: ``(B, channels, H, W)``.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.exact = False
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        if not self.exact:
            return F.batch_norm(x, None, None, self.weight, self.bias, training=True, eps=self.eps)
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        var = (x - mean).pow(2).mean(dim=(0, 2, 3), keepdim=True)
        x_hat = (x - mean) * torch.rsqrt(var + self.eps)
        return x_hat * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


@contextmanager
def exact_batchnorm(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every ``BatchStatNorm2d`` of ``model`` uses the exact (plain-op) form.

    Second-order MAML under ``vmap`` needs it; everything else runs faster with the fused kernel.
    The previous setting of each layer is restored on exit, also after an error.

    Example:
        >>> with exact_batchnorm(model):
        ...     grads = torch.func.grad(meta_loss)(params)
    """
    layers = [m for m in model.modules() if isinstance(m, BatchStatNorm2d)]
    before = [m.exact for m in layers]
    for m in layers:
        m.exact = True
    try:
        yield model
    finally:
        for m, flag in zip(layers, before):
            m.exact = flag


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Conv 3x3 -> BatchNorm (batch statistics only) -> ReLU -> MaxPool 2x2."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        BatchStatNorm2d(out_channels),
        nn.ReLU(inplace=False),
        nn.MaxPool2d(2),
    )


class Conv4(nn.Module):
    """Conv-4 feature extractor with an optional linear head.

    Args:
        in_channels: 1 for grey images (Omniglot), 3 for RGB.
        hidden: channels of every block (64 in the papers).
        num_classes: outputs of the linear head; None for an embedding network (ProtoNet).
        image_size: input height and width, to size the head (28 or 84 in the papers).

    Shape:
        input: ``(B, in_channels, image_size, image_size)``; ``forward_features``: ``(B, num_features)``;
        ``forward``: ``(B, num_classes)``, or the features when there is no head.

    Raises:
        ValueError: if ``image_size`` is too small for four poolings.
    """

    def __init__(
        self, in_channels: int = 1, hidden: int = 64, num_classes: int | None = None, image_size: int = 28
    ) -> None:
        super().__init__()
        if image_size < 16:
            raise ValueError(f"image_size={image_size} vanishes after four 2x2 poolings; use 16 or more.")
        self.encoder = nn.Sequential(
            conv_block(in_channels, hidden), conv_block(hidden, hidden),
            conv_block(hidden, hidden), conv_block(hidden, hidden),
        )
        side = image_size
        for _ in range(4):
            side //= 2
        self.num_features = hidden * side * side
        self.head = nn.Linear(self.num_features, num_classes) if num_classes is not None else nn.Identity()

    @property
    def feature_dim(self) -> int:
        """The former name of ``num_features`` (the embedding size)."""
        return self.num_features

    def forward_features(self, x: Tensor) -> Tensor:
        """Flattened embeddings of ``x``, shape ``(B, num_features)``."""
        return self.encoder(x).flatten(1)

    def forward_head(self, features: Tensor) -> Tensor:
        """Class scores of embeddings (the embeddings themselves when there is no head)."""
        return self.head(features)

    def forward(self, x: Tensor) -> Tensor:
        """Class scores from the head, or embeddings when the model has no head."""
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The head (``nn.Identity`` for an embedding network)."""
        return self.head

    def reset_classifier(self, num_classes: int) -> nn.Linear:
        """Replace the head by a fresh ``Linear(num_features, num_classes)`` on the same device; return it."""
        device = next(self.parameters()).device
        self.head = nn.Linear(self.num_features, num_classes).to(device)
        return self.head
