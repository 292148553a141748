"""The "Closer Look" baseline (Chen et al. 2019): a linear head on frozen features.

Pre-train an ordinary classifier on all training classes (``tlhelpers.engine.fit``, as in chapter
2), keep its feature extractor frozen, and for each test episode fit a logistic-regression head on
the support embeddings alone. Chen et al. showed that this simple baseline is competitive with
meta-learning when the backbone is trained well: how good the features are matters more than the
meta-learning algorithm.

Example:
    >>> logits = linear_probe_predict(backbone.forward_features, episode)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from torch import Tensor

from tlhelpers.fewshot.sampler import Episode


@torch.no_grad()
def episode_features(embed: Callable[[Tensor], Tensor], episode: Episode) -> tuple[Tensor, Tensor]:
    """L2-normalised support and query features, embedded in one batch like ProtoNet does.

    Shape:
        returns ``(N*K, D)`` and ``(N*Q, D)``, on the CPU.
    """
    n_support = len(episode.support_y)
    feats = F.normalize(embed(torch.cat([episode.support_x, episode.query_x])).flatten(1), dim=1).cpu()
    return feats[:n_support], feats[n_support:]


def linear_probe_predict(embed: Callable[[Tensor], Tensor], episode: Episode, c: float = 10.0) -> Tensor:
    """Fit a logistic-regression head on the frozen support features; return query logits.

    Args:
        embed: the frozen feature extractor, e.g. ``model.forward_features``.
        episode: one episode.
        c: inverse L2 strength of scikit-learn's ``LogisticRegression``.

    Returns:
        Query logits (the head's decision function).

    Shape:
        returns ``(N*Q, N)``.
    """
    support, query = episode_features(embed, episode)
    head = LogisticRegression(C=c, max_iter=1000)
    head.fit(support.numpy(), episode.support_y.cpu().numpy())
    return torch.from_numpy(head.decision_function(query.numpy())).float()
