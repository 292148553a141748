"""Baselines: a linear head on frozen features ("Closer Look"), and nearest neighbours on raw pixels.

Pre-train an ordinary classifier on all training classes (``tlhelpers.training.engine.fit``, as in chapter
2), keep its feature extractor frozen, and for each test episode fit a logistic-regression head on
the support embeddings alone. Chen et al. showed that this simple baseline is competitive with
meta-learning when the backbone is trained well: how good the features are matters more than the
meta-learning algorithm.

The pixel baseline needs no training at all: compare each query with the support images (or with
their per-class mean) by Euclidean distance on the raw pixels. A few-shot method that does not beat
it by a wide margin has learned nothing useful about the characters.

Example:
    >>> logits = linear_probe_predict(backbone.forward_features, episode)
    >>> pixel_logits = pixel_predict(episode)            # nearest class mean on raw pixels
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from torch import Tensor

from tlhelpers.fewshot.protonet import prototypes, squared_distance_logits
from tlhelpers.fewshot.sampler import Episode

PIXEL_RULES = ("prototype", "neighbour")


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


def pixel_predict(episode: Episode, rule: str = "prototype") -> Tensor:
    """Query logits from raw pixels: minus the squared distance to a class's support images.

    Args:
        episode: one episode.
        rule: ``"prototype"`` compares a query with the mean support image of each class (nearest
            class mean); ``"neighbour"`` with the closest support image of each class (1-NN). With
            one shot the two are the same.

    Returns:
        Query logits; the arg-max is the predicted class.

    Shape:
        returns ``(N*Q, N)``.

    Raises:
        ValueError: for an unknown ``rule``.
    """
    if rule not in PIXEL_RULES:
        raise ValueError(f"rule={rule!r} is unknown; use one of {', '.join(PIXEL_RULES)}.")
    support = episode.support_x.flatten(1).float()
    query = episode.query_x.flatten(1).float()
    if rule == "prototype":
        return squared_distance_logits(query, prototypes(support, episode.support_y, episode.n_way))
    per_image = squared_distance_logits(query, support)  # (N*Q, N*K)
    best = torch.full((len(query), episode.n_way), -torch.inf, dtype=per_image.dtype, device=per_image.device)
    index = episode.support_y.unsqueeze(0).expand_as(per_image)
    return best.scatter_reduce(1, index, per_image, reduce="amax")
