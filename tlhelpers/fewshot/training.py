"""The episodic training loop shared by ProtoNet, MAML and Reptile (``meta_train``).

Chapter 1's ``fit`` walks over a loader epoch by epoch; meta-learning instead draws a fresh
meta-batch of episodes at every iteration. Each method supplies a ``step_fn(model, batch)`` that
writes gradients into ``.grad`` (by ``backward`` or by assignment) and returns its loss and
accuracy; the loop does the rest: optimiser and schedule, progress bar, periodic validation,
history and an atomic checkpoint to resume from after a Colab disconnect.

Example:
    >>> history = meta_train(model, protonet_step, train_sampler, num_iterations=2000, lr=1e-3,
    ...                      val_fn=lambda m: evaluate_episodes(..., num_episodes=100).mean)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from tqdm.auto import tqdm

from tlhelpers.checkpoint import atomic_save, restore_training
from tlhelpers.engine import History
from tlhelpers.fewshot.sampler import Episode, EpisodeSampler
from tlhelpers.runtime import get_device

MetaStepFn = Callable[[nn.Module, Episode], dict[str, float]]


def meta_train(
    model: nn.Module,
    step_fn: MetaStepFn,
    sampler: EpisodeSampler,
    num_iterations: int,
    *,
    meta_batch: int = 1,
    optimizer: Optimizer | None = None,
    lr: float = 1e-3,
    scheduler: Callable[[Optimizer, int], LRScheduler] | None = None,
    val_fn: Callable[[nn.Module], float] | None = None,
    eval_every: int = 100,
    device: str | torch.device | None = None,
    seed: int = 0,
    checkpoint_path: str | Path | None = None,
    resume: bool = True,
    progress: bool = True,
    desc: str = "meta-train",
    time_limit: float | None = None,
) -> History:
    """Meta-train ``model`` for ``num_iterations`` meta-batches; return the :class:`History`.

    With ``time_limit``, the loop checks the time after every iteration and, once the limit has
    passed, writes a last record (and checkpoint) at that iteration and stops: ``stopped_early``
    of the history is then True, its last ``iteration`` says how far it got and ``planned`` is
    ``num_iterations``. The schedule keeps its plan; with ``checkpoint_path`` a later call continues.

    Args:
        model: the network (moved to ``device``).
        step_fn: fills ``.grad`` for one meta-batch and returns ``{"loss", "acc"}``.
        sampler: draws training episodes.
        num_iterations: meta-batches to train on.
        meta_batch: episodes per meta-batch.
        optimizer: the outer optimiser; Adam with ``lr`` when None.
        lr: learning rate of the default optimiser.
        scheduler: factory ``(optimizer, total_steps) -> LRScheduler``, stepped every iteration.
        val_fn: returns a validation accuracy for the current model, called every ``eval_every``.
        eval_every: iterations per history record (and checkpoint).
        device: where to train; None picks one (``runtime.get_device``).
        seed: seed of the training episodes.
        checkpoint_path: save here at every record and resume from it when it exists.
        resume: resume from ``checkpoint_path`` if present.
        progress: show a tqdm bar.
        desc: the bar's label.
        time_limit: seconds of wall time for this call, checked after every iteration; None for
            no limit.

    Returns:
        One record per ``eval_every`` iterations: ``iteration``, ``train_loss``, ``train_acc``
        (averages since the last record), ``val_acc`` (when ``val_fn`` is given), ``time_s``.

    Raises:
        ValueError: if ``num_iterations``, ``meta_batch`` or ``eval_every`` is below 1, or
            ``time_limit`` is negative.
    """
    for name, value in (("num_iterations", num_iterations), ("meta_batch", meta_batch), ("eval_every", eval_every)):
        if value < 1:
            raise ValueError(f"{name}={value} must be at least 1.")
    if time_limit is not None and time_limit < 0:
        raise ValueError(f"time_limit={time_limit} must be a number of seconds >= 0, or None for no limit.")
    started = time.perf_counter()
    dev = get_device(device)
    model.to(dev)
    if optimizer is None:
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    sched = scheduler(optimizer, num_iterations) if scheduler is not None else None
    gen = torch.Generator().manual_seed(seed)
    history, start, elapsed = History(planned=num_iterations), 0, 0.0
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    if ckpt is not None and resume and ckpt.exists():
        state = restore_training(ckpt, model, optimizer, sched, map_location=dev)
        gen.set_state(state["generator"])
        history = History.from_dict(state["history"])
        history.planned = num_iterations
        start, elapsed = int(state["iteration"]), float(state["time_s"])

    sums = {"loss": 0.0, "acc": 0.0}
    count = 0
    t0 = time.perf_counter() - elapsed
    bar = tqdm(range(start, num_iterations), desc=desc, initial=start, total=num_iterations, disable=not progress)
    for it in bar:
        model.train()
        batch = sampler.sample_batch(meta_batch, generator=gen).to(dev)
        optimizer.zero_grad(set_to_none=True)
        out = step_fn(model, batch)
        optimizer.step()
        if sched is not None:
            sched.step()
        sums["loss"] += out["loss"]
        sums["acc"] += out["acc"]
        count += 1
        out_of_time = time_limit is not None and time.perf_counter() - started >= time_limit
        if (it + 1) % eval_every == 0 or it + 1 == num_iterations or out_of_time:
            record = {"iteration": it + 1, "train_loss": sums["loss"] / count, "train_acc": sums["acc"] / count}
            if val_fn is not None:
                record["val_acc"] = float(val_fn(model))
            record["time_s"] = time.perf_counter() - t0
            history.append(record)
            bar.set_postfix({k: f"{v:.3f}" for k, v in record.items() if k.endswith(("loss", "acc"))})
            sums, count = {"loss": 0.0, "acc": 0.0}, 0
            if ckpt is not None:
                atomic_save({
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": sched.state_dict() if sched is not None else None,
                    "generator": gen.get_state(), "history": history.to_dict(),
                    "iteration": it + 1, "time_s": record["time_s"],
                }, ckpt)
        if out_of_time and it + 1 < num_iterations:
            history.stopped_early = True
            break
    bar.close()
    return history
