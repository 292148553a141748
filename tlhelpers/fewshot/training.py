"""The episodic training loop shared by ProtoNet, MAML and Reptile (``meta_train``).

Chapter 1's ``fit`` walks over a loader epoch by epoch; meta-learning instead draws a fresh
meta-batch of episodes at every iteration. Otherwise the two loops share one contract: each method
supplies a ``step_fn(model, batch)`` that returns a :class:`tlhelpers.training.engine.StepOutput` (the loss,
or gradients it computed itself, see the rule there) and the loop back-propagates, steps the
optimiser and schedule, keeps frozen BatchNorm layers in eval mode (``engine.train_mode``), shows
the progress bar, validates periodically, records the same ``step``/``train_loss``/``seconds`` keys
as ``fit`` and writes an atomic checkpoint to resume from, bit for bit, after a Colab disconnect.

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

from tlhelpers.core.checkpoint import atomic_save, load_loader_state, loader_state, restore_training
from tlhelpers.core.runtime import get_device
from tlhelpers.fewshot.sampler import Episode, EpisodeSampler
from tlhelpers.training.engine import (
    History,
    StepOutput,
    _rng_state,
    _set_rng_state,
    _Tally,
    apply_gradients,
    train_mode,
)

MetaStepFn = Callable[[nn.Module, Episode], StepOutput]


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

    One iteration is one optimiser step: the loop draws ``meta_batch`` episodes from the sampler's
    own random stream (restarted from ``seed`` by a fresh run), calls ``step_fn`` and applies its
    :class:`~tlhelpers.training.engine.StepOutput` by the rule of ``fit`` (``engine.apply_gradients``). The
    checkpoint holds the sampler's stream (``checkpoint.loader_state(sampler)``) and the global RNG states, so a
    resumed run ends with exactly the weights of an uninterrupted one.

    With ``time_limit``, the loop checks the time after every iteration and, once the limit has
    passed, writes a last record (and checkpoint) at that iteration and stops: ``stopped_early``
    of the history is then True, its last ``step`` says how far it got and ``planned`` is
    ``num_iterations``. The schedule keeps its plan; with ``checkpoint_path`` a later call continues.

    Args:
        model: the network (moved to ``device``).
        step_fn: ``(model, meta_batch) -> StepOutput`` for one meta-batch of stacked episodes.
        sampler: draws training episodes (its random stream is restarted, then advanced).
        num_iterations: meta-batches to train on.
        meta_batch: episodes per meta-batch.
        optimizer: the outer optimiser; Adam with ``lr`` when None.
        lr: learning rate of the default optimiser.
        scheduler: factory ``(optimizer, total_steps) -> LRScheduler``, stepped every iteration.
        val_fn: returns a validation accuracy for the current model, called every ``eval_every``.
        eval_every: iterations per history record (and checkpoint).
        device: where to train; None picks one (``runtime.get_device``).
        seed: seed of the training episodes (``sampler.manual_seed(seed)`` at a fresh start).
        checkpoint_path: save here at every record and resume from it when it exists.
        resume: resume from ``checkpoint_path`` if present.
        progress: show a tqdm bar.
        desc: the bar's label.
        time_limit: seconds of wall time for this call, checked after every iteration; None for
            no limit.

    Returns:
        One record per ``eval_every`` iterations: ``step`` (iterations so far), ``train_loss``,
        ``train_acc`` and other step metrics (averages since the last record), ``val_acc`` (when
        ``val_fn`` is given) and ``seconds`` (wall time since the last record), the keys and
        meanings of ``fit``'s records.

    Raises:
        ValueError: if ``num_iterations``, ``meta_batch`` or ``eval_every`` is below 1, or
            ``time_limit`` is negative. (A sampler with fewer usable classes than ``n_way`` is
            refused when it is built.)
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
    sampler.manual_seed(seed)
    history, start = History(planned=num_iterations), 0
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    if ckpt is not None and resume and ckpt.exists():
        state = restore_training(ckpt, model, optimizer, sched, map_location=dev)
        load_loader_state(sampler, state["sampler"])
        _set_rng_state(state["rng"])
        history = History.from_dict(state["history"])
        history.planned = num_iterations
        start = int(state["step"])

    tally = _Tally()
    t0 = time.perf_counter()
    bar = tqdm(range(start, num_iterations), desc=desc, initial=start, total=num_iterations, disable=not progress)
    for it in bar:
        train_mode(model)
        batch = sampler.sample_batch(meta_batch).to(dev)
        out = step_fn(model, batch)
        optimizer.zero_grad(set_to_none=True)
        apply_gradients(model, out)
        optimizer.step()
        if sched is not None:
            sched.step()
        tally.add(out)
        out_of_time = time_limit is not None and time.perf_counter() - started >= time_limit
        if (it + 1) % eval_every == 0 or it + 1 == num_iterations or out_of_time:
            record: dict[str, float] = {"step": it + 1, **tally.means(dev)}
            if val_fn is not None:
                record["val_acc"] = float(val_fn(model))
            record["seconds"] = time.perf_counter() - t0
            history.append(record)
            bar.set_postfix({k: f"{v:.3f}" for k, v in record.items() if k.endswith(("loss", "acc"))})
            tally, t0 = _Tally(), time.perf_counter()
            if ckpt is not None:
                atomic_save({
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": sched.state_dict() if sched is not None else None,
                    "sampler": loader_state(sampler), "rng": _rng_state(), "history": history.to_dict(),
                    "step": it + 1,
                }, ckpt)
        if out_of_time and it + 1 < num_iterations:
            history.stopped_early = True
            break
    bar.close()
    return history
