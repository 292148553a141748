"""Prototypical Networks (Snell et al. 2017): classify queries by distance to class means.

The backbone embeds every image; the prototype of a class is the mean embedding of its support
images, and a query's logit for a class is minus its squared Euclidean distance to that
prototype. Training is plain cross-entropy over query logits, episode after episode, so the
backbone learns an embedding in which the class mean is a good classifier for classes it has
never seen.

Example:
    >>> logits = protonet_logits(backbone, episode)   # (N*Q, N)
    >>> out = protonet_step(backbone, stack_episodes([episode]))  # a StepOutput; the loop back-propagates out.loss
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tlhelpers.fewshot.sampler import Episode
from tlhelpers.training.engine import StepOutput


def prototypes(support_emb: Tensor, support_y: Tensor, n_way: int) -> Tensor:
    """Mean embedding of each class.

    Args:
        support_emb: support embeddings.
        support_y: their labels in ``0..n_way-1``.
        n_way: number of classes.

    Returns:
        One prototype per class.

    Shape:
        support_emb: ``(S, D)``; support_y: ``(S,)``; returns ``(n_way, D)``.

    Raises:
        ValueError: if a class has no support example.
    """
    counts = torch.bincount(support_y, minlength=n_way)
    if len(counts) > n_way or bool((counts == 0).any()):
        raise ValueError(f"support labels must cover each class 0..{n_way - 1} at least once; check the episode.")
    sums = torch.zeros(n_way, support_emb.shape[1], dtype=support_emb.dtype, device=support_emb.device)
    sums.index_add_(0, support_y, support_emb)
    return sums / counts.unsqueeze(1).to(support_emb.dtype)


def squared_distance_logits(query_emb: Tensor, protos: Tensor) -> Tensor:
    """Logits ``-||q - c||^2`` of each query for each prototype.

    Computed as ``2 q.c - |q|^2 - |c|^2`` (one matrix product), clamped so rounding never makes a
    squared distance negative.

    Shape:
        query_emb: ``(Q, D)``; protos: ``(N, D)``; returns ``(Q, N)``.
    """
    sq = (query_emb.pow(2).sum(1, keepdim=True) + protos.pow(2).sum(1).unsqueeze(0) - 2 * query_emb @ protos.T)
    return -sq.clamp_min(0)


def embed(backbone: nn.Module, x: Tensor) -> Tensor:
    """The embedding ProtoNet averages: ``forward_features`` of a classifier (its head is ignored), else ``backbone(x)``.

    So a Conv-4 with or without a head, a ``build_classifier`` ResNet and a plain ``nn.Sequential``
    embedding network all work.
    """
    own = getattr(backbone, "forward_features", None)
    return own(x) if callable(own) else backbone(x)


def protonet_logits(backbone: nn.Module, episode: Episode) -> Tensor:
    """Query logits of one episode; support and query go through the backbone in one batch.

    Shape:
        returns ``(N*Q, N)``.
    """
    n_support = len(episode.support_y)
    emb = embed(backbone, torch.cat([episode.support_x, episode.query_x]))
    protos = prototypes(emb[:n_support], episode.support_y, episode.n_way)
    return squared_distance_logits(emb[n_support:], protos)


def protonet_step(backbone: nn.Module, batch: Episode) -> StepOutput:
    """One training step on a meta-batch: the mean query cross-entropy over its tasks.

    Follows the loops' rule (:class:`tlhelpers.training.engine.StepOutput`): the loop back-propagates the loss.

    Args:
        backbone: the embedding network.
        batch: stacked episodes (leading task dimension), from ``EpisodeSampler.sample_batch``.

    Returns:
        The loss, and the query logits and labels of all tasks (for ``train_acc``).
    """
    num_tasks = batch.num_tasks
    losses, logits, targets = [], [], []
    for t in range(num_tasks):
        task = batch.task(t)
        task_logits = protonet_logits(backbone, task)
        losses.append(F.cross_entropy(task_logits, task.query_y))
        logits.append(task_logits.detach())
        targets.append(task.query_y)
    return StepOutput(torch.stack(losses).mean(), torch.cat(logits), torch.cat(targets))


@torch.no_grad()
def protonet_predict(backbone: nn.Module, episode: Episode) -> Tensor:
    """Query logits without gradients, for evaluation (``evaluation.evaluate_episodes``)."""
    return protonet_logits(backbone, episode)
