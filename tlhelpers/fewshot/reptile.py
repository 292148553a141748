"""Reptile (Nichol, Achiam and Schulman 2018): move the initialisation toward adapted weights.

For each task, a copy of the model takes a few ordinary optimiser steps (SGD or Adam) on the
task's data, reaching weights ``phi``; the meta-update then moves the shared weights ``theta`` a
fraction ``meta_lr`` of the way toward them: ``theta <- theta + meta_lr * (mean(phi) - theta)``.
No second derivatives and no ``torch.func`` are needed, only a copy and a normal training loop.

``reptile_step`` returns ``theta - mean(phi)`` as the step's ``grads``; the loop (or
``engine.apply_gradients``) writes it into ``.grad``, so an outer ``torch.optim.SGD`` with
``lr=meta_lr`` performs exactly that update (and a scheduler can anneal ``meta_lr``).

Example:
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    >>> out = reptile_step(model, batch, inner_steps=5, inner_lr=1e-3)
    >>> optimizer.zero_grad(); apply_gradients(model, out); optimizer.step()
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tlhelpers.fewshot.sampler import Episode
from tlhelpers.training.engine import StepOutput

_OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}


def reptile_adapt(
    model: nn.Module, x: Tensor, y: Tensor, *, inner_steps: int, inner_lr: float, inner_optimizer: str = "adam"
) -> nn.Module:
    """Train a copy of ``model`` for ``inner_steps`` full-batch steps on ``(x, y)``; return the copy.

    Args:
        model: the meta-model; it is not modified.
        x: the task's images.
        y: their labels.
        inner_steps: optimiser steps.
        inner_lr: their learning rate.
        inner_optimizer: ``"sgd"`` or ``"adam"`` (Adam with ``betas=(0, 0.999)`` as in the paper).

    Returns:
        The adapted copy.

    Raises:
        ValueError: for an unknown ``inner_optimizer``.
    """
    if inner_optimizer not in _OPTIMIZERS:
        raise ValueError(f"inner_optimizer={inner_optimizer!r} is unknown; use 'sgd' or 'adam'.")
    learner = copy.deepcopy(model)
    params = [p for p in learner.parameters() if p.requires_grad]
    extra = {"betas": (0.0, 0.999)} if inner_optimizer == "adam" else {}
    opt = _OPTIMIZERS[inner_optimizer](params, lr=inner_lr, **extra)
    for _ in range(inner_steps):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(learner(x), y).backward()
        opt.step()
    return learner


def reptile_update(model: nn.Module, adapted: list[nn.Module], meta_lr: float) -> None:
    """In place: ``theta <- theta + meta_lr * (mean(phi) - theta)`` over the adapted copies.

    Raises:
        ValueError: if ``adapted`` is empty.
    """
    if not adapted:
        raise ValueError("no adapted models; run reptile_adapt on at least one task first.")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                target = torch.stack([dict(m.named_parameters())[name] for m in adapted]).mean(0)
                p.add_(meta_lr * (target - p))


def reptile_step(
    model: nn.Module,
    batch: Episode,
    *,
    inner_steps: int,
    inner_lr: float,
    inner_optimizer: str = "adam",
) -> StepOutput:
    """One Reptile meta-step: adapt a copy per task; the update direction is ``theta - mean(phi)``.

    Each task trains on its support and query images together (Reptile has no inner/outer split);
    the returned loss and accuracy are those of the adapted copies on their own task data.

    Args:
        model: the meta-model.
        batch: stacked episodes.
        inner_steps: optimiser steps per task.
        inner_lr: their learning rate.
        inner_optimizer: ``"sgd"`` or ``"adam"``.

    Returns:
        ``grads``: ``theta - mean(phi)`` for every trainable parameter (the loop writes it into
        ``.grad``, the rule of :class:`tlhelpers.training.engine.StepOutput`), the mean post-adaptation loss
        on the task data (a detached scalar) and its accuracy in ``metrics["train_acc"]``.
    """
    adapted, losses, accs = [], [], []
    for t in range(batch.num_tasks):
        task = batch.task(t)
        x = torch.cat([task.support_x, task.query_x])
        y = torch.cat([task.support_y, task.query_y])
        learner = reptile_adapt(model, x, y, inner_steps=inner_steps, inner_lr=inner_lr, inner_optimizer=inner_optimizer)
        with torch.no_grad():
            logits = learner(x)
        losses.append(F.cross_entropy(logits, y).item())
        accs.append((logits.argmax(1) == y).float().mean().item())
        adapted.append(learner)
    grads = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            target = torch.stack([dict(m.named_parameters())[name].detach() for m in adapted]).mean(0)
            grads[name] = p.detach() - target
    return StepOutput(torch.tensor(sum(losses) / len(losses)), metrics={"train_acc": sum(accs) / len(accs)}, grads=grads)


def reptile_predict(
    model: nn.Module, episode: Episode, *, inner_steps: int, inner_lr: float, inner_optimizer: str = "adam"
) -> Tensor:
    """Fine-tune a copy on the support set, then return its query logits.

    Shape:
        returns ``(N*Q, N)``.
    """
    learner = reptile_adapt(
        model, episode.support_x, episode.support_y,
        inner_steps=inner_steps, inner_lr=inner_lr, inner_optimizer=inner_optimizer,
    )
    with torch.no_grad():
        return learner(episode.query_x)
