"""ProtoMAML (Triantafillou et al. 2020, "Meta-Dataset"): MAML whose output layer starts at the prototypes.

MAML learns one initial head for every task, although the classes of a new task are arbitrary;
ProtoNet needs no head at all. ProtoMAML builds the head of each episode from its support set:
with the prototypes ``p_c`` (class means of the support embeddings),

    ``W_c = 2 p_c``,   ``b_c = -||p_c||^2``,

so the logit ``W_c . q + b_c = -||q - p_c||^2 + ||q||^2`` is ProtoNet's logit plus a constant per
query: before any inner step ProtoMAML predicts exactly what ProtoNet predicts. The inner loop then
runs ``inner_steps`` of SGD on the support cross-entropy, on the backbone and the head together
(``adapt_backbone=True``, the paper's choice) or on the head alone (``adapt_backbone=False``:
cheaper, the embeddings are computed once; the backbone then learns only through the outer loss).
The outer loss is the query cross-entropy after adaptation. The head's initialisation is part of
the graph, so the meta-gradient also flows through the prototypes into the backbone.

With ``first_order=True`` (like FOMAML) the inner updates are treated as constants: the
meta-gradient is the query-loss gradient at the adapted weights, passed to the backbone directly
and, for the head, through the prototype initialisation (the second-order terms of the inner
steps are dropped; the path through the prototypes is kept, as in the paper).

Each support and query set goes through the backbone on its own, as in ``maml.adapt``. With the
batch-statistics BatchNorm of Conv-4 that makes the 0-step logits those of ProtoNet embedding
support and query separately (``protonet.protonet_logits`` embeds them in one batch, whose
statistics differ slightly); with a backbone without batch statistics the two agree exactly.

Tasks of a meta-batch are processed in a loop (no ``vmap``), so the fused batch-norm kernel is
exact here also for second order.

Example:
    >>> backbone = Conv4(in_channels=1)                     # an embedding network, no head needed
    >>> out = protomaml_step(backbone, batch, inner_lr=0.1, inner_steps=1)   # a StepOutput with grads
    >>> logits = protomaml_predict(backbone, episode, inner_lr=0.1, inner_steps=3)  # (N*Q, N)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad

from tlhelpers.fewshot.maml import Params, get_params
from tlhelpers.fewshot.protonet import embed, prototypes
from tlhelpers.fewshot.sampler import Episode
from tlhelpers.training.engine import StepOutput


class _Embedder(nn.Module):
    """Runs ``protonet.embed`` of the wrapped backbone, so ``functional_call`` can swap its weights."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return embed(self.net, x)


def _embed(backbone: nn.Module, params: Params, x: Tensor) -> Tensor:
    return functional_call(_Embedder(backbone), {f"net.{k}": v for k, v in params.items()}, (x,))


def _check(inner_lr: float, inner_steps: int) -> None:
    if inner_steps < 0:
        raise ValueError(f"inner_steps={inner_steps} must be >= 0 (0 gives ProtoNet's predictions).")
    if inner_lr < 0:
        raise ValueError(f"inner_lr={inner_lr} must be >= 0; pass a positive step size.")


def _episode_n_way(episode: Episode, n_way: int | None) -> int:
    if n_way is not None and n_way != episode.n_way:
        raise ValueError(f"n_way={n_way} but the episode has {episode.n_way} classes; pass n_way={episode.n_way} or None.")
    return episode.n_way


def protomaml_head(support_emb: Tensor, support_y: Tensor, n_way: int) -> tuple[Tensor, Tensor]:
    """The prototype-initialised linear head: ``W_c = 2 p_c``, ``b_c = -||p_c||^2``.

    Differentiable: gradients flow back into ``support_emb``.

    Args:
        support_emb: support embeddings.
        support_y: their labels in ``0..n_way-1``.
        n_way: number of classes.

    Returns:
        ``(weight, bias)`` of the head; ``F.linear(q, weight, bias)`` is ProtoNet's ``-||q - p_c||^2``
        plus ``||q||^2``.

    Shape:
        support_emb: ``(S, D)``; support_y: ``(S,)``; returns ``(n_way, D)`` and ``(n_way,)``.

    Raises:
        ValueError: if the shapes disagree, or the labels do not cover each of the ``n_way`` classes
            (e.g. ``n_way`` differs from the episode's).
    """
    if support_emb.ndim != 2 or len(support_emb) == 0 or support_y.shape != (len(support_emb),):
        raise ValueError(
            f"support_emb {tuple(support_emb.shape)} and support_y {tuple(support_y.shape)} disagree; "
            "pass (S, D) embeddings and (S,) labels."
        )
    if n_way < 1 or int(support_y.max()) >= n_way or int(support_y.min()) < 0:
        raise ValueError(f"support labels span 0..{int(support_y.max())} but n_way={n_way}; use the episode's n_way.")
    protos = prototypes(support_emb, support_y, n_way)
    return 2 * protos, -protos.pow(2).sum(1)


def protomaml_adapt(
    backbone: nn.Module,
    params: Params | None,
    support_x: Tensor,
    support_y: Tensor,
    n_way: int,
    *,
    inner_lr: float,
    inner_steps: int,
    adapt_backbone: bool = True,
    first_order: bool = False,
) -> tuple[Params, Tensor, Tensor]:
    """Initialise the head from the prototypes, then run ``inner_steps`` of SGD on the support loss.

    A pure function of ``params``, differentiable with respect to them (through ``torch.func`` or
    autograd), including through the prototype initialisation.

    Args:
        backbone: the embedding network, used only for its forward function (``protonet.embed``).
        params: the backbone's starting weights; None takes ``maml.get_params(backbone)`` (detached).
        support_x: support images.
        support_y: support labels in ``0..n_way-1``.
        n_way: number of classes.
        inner_lr: inner-loop step size, for the backbone and the head alike.
        inner_steps: SGD steps (0 returns the prototype head and ``params`` unchanged).
        adapt_backbone: adapt the backbone and the head (True, as in the paper) or the head alone.
        first_order: treat each inner gradient as a constant (detached), as first-order MAML.

    Returns:
        ``(adapted_params, weight, bias)``: the backbone's weights after adaptation (``params``
        itself when ``adapt_backbone`` is False) and the adapted head.

    Shape:
        support_x: ``(S, C, H, W)`` (or whatever the backbone takes); support_y: ``(S,)``;
        weight: ``(n_way, D)``; bias: ``(n_way,)``.

    Raises:
        ValueError: if ``inner_steps`` or ``inner_lr`` is negative, or ``n_way`` does not match the labels.
    """
    _check(inner_lr, inner_steps)
    if params is None:
        params = get_params(backbone)
    support_emb = _embed(backbone, params, support_x)
    weight, bias = protomaml_head(support_emb, support_y, n_way)

    def cut(t: Tensor) -> Tensor:
        return t.detach() if first_order else t

    if not adapt_backbone:  # the embeddings stay fixed: the inner loop is logistic regression on them
        head_grad = grad(lambda w, b: F.cross_entropy(F.linear(support_emb, w, b), support_y), argnums=(0, 1))
        for _ in range(inner_steps):
            gw, gb = head_grad(weight, bias)
            weight, bias = weight - inner_lr * cut(gw), bias - inner_lr * cut(gb)
        return params, weight, bias

    def support_loss(p: Params, w: Tensor, b: Tensor) -> Tensor:
        return F.cross_entropy(F.linear(_embed(backbone, p, support_x), w, b), support_y)

    full_grad = grad(support_loss, argnums=(0, 1, 2))
    for _ in range(inner_steps):
        gp, gw, gb = full_grad(params, weight, bias)
        params = {k: v - inner_lr * cut(gp[k]) for k, v in params.items()}
        weight, bias = weight - inner_lr * cut(gw), bias - inner_lr * cut(gb)
    return params, weight, bias


def _task_loss(
    backbone: nn.Module, params: Params, task: Episode, inner_lr: float, inner_steps: int, adapt_backbone: bool,
    first_order: bool,
) -> tuple[Tensor, Tensor]:
    adapted, weight, bias = protomaml_adapt(
        backbone, params, task.support_x, task.support_y, task.n_way, inner_lr=inner_lr, inner_steps=inner_steps,
        adapt_backbone=adapt_backbone, first_order=first_order,
    )
    logits = F.linear(_embed(backbone, adapted, task.query_x), weight, bias)
    return F.cross_entropy(logits, task.query_y), (logits.argmax(-1) == task.query_y).float().mean()


def protomaml_meta_gradient(
    backbone: nn.Module,
    batch: Episode,
    *,
    inner_lr: float,
    inner_steps: int,
    first_order: bool = False,
    adapt_backbone: bool = True,
) -> tuple[Params, float, float]:
    """Meta-gradient of the mean post-adaptation query loss over a meta-batch, with ``torch.func``.

    Args:
        backbone: the embedding network; its current weights are the meta-parameters.
        batch: stacked episodes (``EpisodeSampler.sample_batch``).
        inner_lr: inner-loop step size.
        inner_steps: inner SGD steps on each task's support set.
        first_order: drop the second derivatives of the inner steps (keeps the path through the prototypes).
        adapt_backbone: adapt the backbone in the inner loop (True) or the head alone.

    Returns:
        ``(grads, loss, acc)``: the gradient of each trainable parameter (zeros for parameters the
        embedding does not use, e.g. a Conv-4's classifier head), the mean query loss and accuracy.

    Raises:
        ValueError: if ``batch`` is a single episode, or ``inner_steps``/``inner_lr`` is negative.
    """
    if batch.support_y.ndim != 2:
        raise ValueError("batch must be stacked episodes (T, ...); wrap one episode with stack_episodes([episode]).")
    _check(inner_lr, inner_steps)
    params = get_params(backbone)

    def mean_loss(p: Params) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        outs = [
            _task_loss(backbone, p, batch.task(t), inner_lr, inner_steps, adapt_backbone, first_order)
            for t in range(batch.num_tasks)
        ]
        loss = torch.stack([o[0] for o in outs]).mean()
        return loss, (loss, torch.stack([o[1] for o in outs]).mean())

    grads, (loss, acc) = grad(mean_loss, has_aux=True)(params)
    return grads, float(loss), float(acc)


def protomaml_step(
    backbone: nn.Module,
    batch: Episode,
    *,
    inner_lr: float,
    inner_steps: int,
    first_order: bool = False,
    adapt_backbone: bool = True,
) -> StepOutput:
    """One meta-training step for ``fewshot.training.meta_train`` (or ``engine.apply_gradients`` by hand).

    Like ``maml.maml_step``, the step hands its meta-gradient over in ``grads`` and the loop writes
    it into ``.grad`` (the rule of :class:`tlhelpers.training.engine.StepOutput`). Bind the keywords
    with a lambda or ``functools.partial`` to get a ``(model, batch) -> StepOutput`` function.

    Args:
        backbone: the embedding network.
        batch: stacked episodes.
        inner_lr: inner-loop step size.
        inner_steps: inner SGD steps.
        first_order: first-order meta-gradient (see :func:`protomaml_meta_gradient`).
        adapt_backbone: adapt the backbone in the inner loop (True) or the head alone.

    Returns:
        The post-adaptation query loss (a detached scalar), ``metrics["train_acc"]`` and ``grads``.

    Raises:
        ValueError: as :func:`protomaml_meta_gradient`.
    """
    grads, loss, acc = protomaml_meta_gradient(
        backbone, batch, inner_lr=inner_lr, inner_steps=inner_steps, first_order=first_order,
        adapt_backbone=adapt_backbone,
    )
    return StepOutput(torch.tensor(loss), metrics={"train_acc": acc}, grads={k: g.detach() for k, g in grads.items()})


def protomaml_predict(
    backbone: nn.Module,
    episode: Episode,
    *,
    inner_lr: float,
    inner_steps: int,
    adapt_backbone: bool = True,
    n_way: int | None = None,
) -> Tensor:
    """Adapt a copy of the weights to the support set, then return the query logits (for ``evaluate_episodes``).

    The backbone itself is left untouched.

    Args:
        backbone: the embedding network.
        episode: one episode.
        inner_lr: inner-loop step size.
        inner_steps: inner SGD steps (0: ProtoNet's predictions).
        adapt_backbone: adapt the backbone too (True) or the head alone.
        n_way: expected number of classes; None takes the episode's.

    Returns:
        Query logits, without gradients.

    Shape:
        returns ``(N*Q, N)``.

    Raises:
        ValueError: if ``inner_steps``/``inner_lr`` is negative or ``n_way`` differs from the episode's.
    """
    n = _episode_n_way(episode, n_way)
    adapted, weight, bias = protomaml_adapt(
        backbone, None, episode.support_x, episode.support_y, n, inner_lr=inner_lr, inner_steps=inner_steps,
        adapt_backbone=adapt_backbone, first_order=True,
    )
    with torch.no_grad():
        return F.linear(_embed(backbone, adapted, episode.query_x), weight.detach(), bias.detach())
