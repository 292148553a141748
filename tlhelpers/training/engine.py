"""The course's training loop: ``fit``, ``evaluate``, ``predict`` and the ``History`` they return.

One loop serves every chapter. A chapter with a different objective (DANN, MMD) passes its own
``step_fn`` and keeps progress bars, AMP, clipping, schedules and checkpoints for free.

Example:
    >>> history = fit(model, train_loader, num_epochs=3, lr=1e-3, val_loader=val_loader)
    >>> history["val_acc"][-1]
    >>> fig = history.plot()
"""

from __future__ import annotations

import math
import os
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from tlhelpers.core.checkpoint import (
    atomic_save,
    check_identity,
    load_loader_state,
    loader_state,
    restore_training,
    run_identity,
    safe_load,
)
from tlhelpers.core.runtime import autocast, get_device, make_grad_scaler

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.typing import LineStyleType


@dataclass
class TrainState:
    """Where a run stands; passed to ``step_fn`` so schedules can use planned progress."""

    step: int
    total_steps: int
    epoch: int

    @property
    def progress(self) -> float:
        """Training progress ``p`` in [0, 1], from the planned number of steps."""
        return min(1.0, self.step / max(1, self.total_steps))


@dataclass
class StepOutput:
    """What one training step returns to the loop (``fit`` and ``fewshot.training.meta_train`` alike).

    The one rule of both loops (:func:`apply_gradients`): a step never calls ``backward`` or the
    optimizer. The loop zeroes the gradients, then back-propagates ``loss``, unless the step filled
    ``grads``: an algorithm whose update is not the gradient of a loss it can hand over (MAML's
    meta-gradient through ``torch.func``, first-order MAML, Reptile's parameter difference) computes
    it itself, and the loop writes ``grads`` into ``.grad`` instead. Clipping, the optimizer step and
    the schedule follow in both cases.

    Attributes:
        loss: the scalar to back-propagate (when ``grads`` is None) and to record as ``train_loss``.
        logits: class scores for accuracy bookkeeping (optional).
        targets: the labels matching ``logits`` (optional).
        metrics: extra scalars (floats or 0-d tensors) averaged over the epoch, e.g.
            ``{"domain_acc": 0.52}``.
        grads: the update direction of each trainable parameter, keyed by the name it has in the
            model the step received (``model.named_parameters()``); None to back-propagate ``loss``.
    """

    loss: Tensor
    logits: Tensor | None = None
    targets: Tensor | None = None
    metrics: dict[str, float | Tensor] = field(default_factory=dict)
    grads: dict[str, Tensor] | None = None


StepFn = Callable[[nn.Module, Any, TrainState], StepOutput]


def classification_step(model: nn.Module, batch: Any, state: TrainState) -> StepOutput:
    """Default step: cross-entropy of ``model(x)`` against ``y`` for a batch ``(x, y)``."""
    x, y = batch[0], batch[1]
    logits = model(x)
    return StepOutput(F.cross_entropy(logits, y), logits.detach(), y)


class History:
    """Per-epoch metrics of a run: ``history["val_acc"]`` is a list with one value per epoch.

    Attributes:
        records: one dict of metrics per epoch (or per record of :func:`tlhelpers.fewshot.training.meta_train`).
        planned: the epochs (or iterations) the run was asked for; None when not set by a loop.
        stopped_early: True when a time limit ended the run before ``planned`` was reached.
    """

    def __init__(
        self, records: Iterable[Mapping[str, float]] = (), *, planned: int | None = None, stopped_early: bool = False
    ) -> None:
        self.records: list[dict[str, float]] = [dict(r) for r in records]
        self.planned = planned
        self.stopped_early = stopped_early

    def append(self, record: Mapping[str, float]) -> None:
        """Add one epoch's metrics."""
        self.records.append(dict(record))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: str) -> list[float]:
        if not any(key in r for r in self.records):
            raise KeyError(f"no metric {key!r} in this history; available: {', '.join(self.keys) or 'none'}.")
        return [r.get(key, math.nan) for r in self.records]

    def __repr__(self) -> str:
        last = self.records[-1] if self.records else {}
        shown = ", ".join(f"{k}={v:.4g}" for k, v in last.items() if k != "epoch")
        stopped = f" of {self.planned}, stopped early by the time limit" if self.stopped_early else ""
        return f"History({len(self)} epochs{stopped}; last: {shown})"

    @property
    def keys(self) -> list[str]:
        """Metric names in first-seen order."""
        seen: dict[str, None] = {}
        for r in self.records:
            seen.update(dict.fromkeys(r))
        return list(seen)

    def to_dict(self) -> dict[str, list[float]]:
        """Column form, JSON-ready."""
        return {k: self[k] for k in self.keys}

    @classmethod
    def from_dict(cls, columns: Mapping[str, list[float]]) -> History:
        """Inverse of :meth:`to_dict`."""
        n = max((len(v) for v in columns.values()), default=0)
        return cls({k: v[i] for k, v in columns.items() if i < len(v)} for i in range(n))

    def plot(self, label: str | None = None, axes: Any = None, *, chance: float | None = None) -> Figure:
        """Loss and accuracy curves per epoch, on two axes; returns the figure.

        House style (:mod:`tlhelpers.core.style`): the run's colour comes from ``label`` (a method name such
        as ``"pretrained"``, or ``"(a) head only"`` for chapter 1's strategy ``a``), training curves are
        dashed and validation curves solid, epochs are whole numbers, and one legend to the right of
        the accuracy axes names each run once and each line style once, for every run drawn so far.

        Args:
            label: the run's name, to draw several runs on the same ``axes``.
            axes: two matplotlib axes to draw into (loss, accuracy); new ones when None. The caller
                owns a figure it passes in: lay it out, close and show it once (``style.finish``).
            chance: draw the chance line at this accuracy (e.g. ``1 / num_classes``), once per axes.

        Returns:
            The figure; closed (shown once, as a cell's value) when this call created it.
        """
        import matplotlib.pyplot as plt

        from tlhelpers.core.style import LABEL_SIZE, chance_line, finish, integer_ticks, line_style

        created = axes is None
        if created:
            fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        fig = axes[0].figure
        x_name = "epoch" if "epoch" in self.keys else "step" if "step" in self.keys else "epoch"  # meta_train: steps
        epochs = self[x_name] if x_name in self.keys else list(range(1, len(self) + 1))
        colour = _run_colour(label)
        for ax, kind in zip(axes, ("loss", "acc")):
            for key in (k for k in self.keys if k.endswith(kind) and not k.startswith("lr")):
                split = key.split("_")[0]
                style = line_style(label or "", split=split, points=len(epochs))
                style["color"] = colour
                if split not in ("train", "val"):
                    style["linestyle"] = "-."  # another metric (e.g. domain_acc): neither train nor val
                name = f"{label} {key}" if label else key
                (line,) = ax.plot(epochs, self[key], label=name, **style)
                line.set_gid(f"{_HISTORY_GID}{label or ''}\x1f{split}")
            ax.set_xlabel(x_name, fontsize=LABEL_SIZE)
            ax.set_ylabel("accuracy" if kind == "acc" else "loss", fontsize=LABEL_SIZE)
            ax.grid(alpha=0.3)
            integer_ticks(ax, "x")
        if chance is not None and not any(line.get_label() == "chance" for line in axes[1].get_lines()):
            chance_line(axes[1], chance)  # once, however many runs share the axes
        _history_legend(axes)
        return finish(fig) if created else fig


_HISTORY_GID = "tlhelpers.History:"
_SPLIT_NAMES = {"train": "training", "val": "validation"}


def _run_colour(label: str | None) -> str:
    """The house colour of a run: its method's name, or the key of a "(a) head only" label."""
    from tlhelpers.core.style import METHOD_COLOURS, method_colour

    if not label:
        return METHOD_COLOURS["a"]
    match = re.fullmatch(r"\((\w+)\)\s*(.*)", label)
    for name in (label, *(match.groups()[::-1] if match else ())):
        if name in METHOD_COLOURS:
            return METHOD_COLOURS[name]
    return method_colour(label)


def _history_legend(axes: Any) -> None:
    """One legend outside the last axes: each run once (its colour), each split once (its line style)."""
    from matplotlib.lines import Line2D

    from tlhelpers.core.style import legend_outside

    runs: dict[str, Any] = {}
    splits: dict[str, LineStyleType] = {}
    others: dict[str, Any] = {}
    for ax in axes:
        for line in ax.get_lines():
            gid = line.get_gid() or ""
            if gid.startswith(_HISTORY_GID):
                run, split = gid[len(_HISTORY_GID):].split("\x1f")
                if run:
                    runs.setdefault(run, line.get_color())
                # get_linestyle is typed str but returns one of the styles matplotlib accepts
                splits.setdefault(split, cast("LineStyleType", line.get_linestyle()))
            elif not line.get_label().startswith("_"):
                others.setdefault(line.get_label(), line)
    handles = [Line2D([], [], color=c, linestyle="-", linewidth=2.5) for c in runs.values()]
    labels = list(runs)
    for split, ls in splits.items():
        handles.append(Line2D([], [], color="#555555", linestyle=ls, marker="o", markersize=3))
        labels.append(_SPLIT_NAMES.get(split, split))
    handles += list(others.values())
    labels += list(others)
    legend_outside(axes[-1], handles=handles, labels=labels)


def _length(loader: Iterable[Any]) -> int | None:
    """``len(loader)`` where it has one (the total of a progress bar), else ``None``."""
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None


def to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Move tensors in a (nested) batch to ``device``; 4-D float tensors optionally to channels_last."""
    if isinstance(batch, Tensor):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.ndim == 4 and batch.is_floating_point():
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device, channels_last) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device, channels_last) for k, v in batch.items()}
    return batch


def train_mode(model: nn.Module) -> nn.Module:
    """``model.train()``, except BatchNorm layers whose parameters are all frozen stay in eval mode.

    A frozen BatchNorm in train mode would still overwrite its running mean and variance with the
    statistics of the new data, so a "frozen" backbone would drift. Keeping it in eval mode uses the
    pretrained statistics, which is what freezing means.
    """
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()
    return model


def apply_gradients(model: nn.Module, out: StepOutput, scaler: Any = None) -> None:
    """Fill ``.grad`` from a step's output: the loops' one rule (see :class:`StepOutput`).

    Back-propagates ``out.loss`` (scaled by ``scaler`` under fp16 mixed precision) when
    ``out.grads`` is None; otherwise adds ``out.grads`` into the ``.grad`` of the named parameters
    (averaged over the processes when ``model`` is a ``DistributedDataParallel``, as its ``backward``
    does). Call ``optimizer.zero_grad()`` before and ``optimizer.step()`` after.

    Args:
        model: the model the step received.
        out: the step's output.
        scaler: a ``torch.amp.GradScaler`` or None.

    Raises:
        ValueError: if ``out.grads`` names a parameter ``model`` does not have.
    """
    if out.grads is None:
        (scaler.scale(out.loss) if scaler is not None else out.loss).backward()
        return
    params = dict(model.named_parameters())
    unknown = sorted(set(out.grads) - set(params))
    if unknown:
        raise ValueError(f"StepOutput.grads names {unknown[:3]}, not parameters of the model; key grads by model.named_parameters().")
    scale = scaler.get_scale() if scaler is not None else 1.0
    world = _world_size() if isinstance(model, nn.parallel.DistributedDataParallel) else 1
    for name, g in out.grads.items():
        g = g.detach().to(params[name].dtype) * scale
        if world > 1:
            g = g.contiguous()
            dist.all_reduce(g)
            g /= world
        p = params[name]
        p.grad = g.clone() if p.grad is None else p.grad + g


class _Tally:
    """Sums of a step's loss, metrics and correct predictions between two history records."""

    def __init__(self) -> None:
        self.sums: dict[str, Any] = {}
        self.steps, self.seen = 0, 0
        self.correct: int | Tensor = 0  # a device tensor once a step had logits: no GPU sync per step

    def add(self, out: StepOutput) -> None:
        # Sums stay on the device: no GPU sync per step, one at each record.
        self.sums["train_loss"] = self.sums.get("train_loss", 0.0) + out.loss.detach().float()
        for k, v in out.metrics.items():
            self.sums[k] = self.sums.get(k, 0.0) + (v.detach().float() if isinstance(v, Tensor) else float(v))
        if out.logits is not None and out.targets is not None:
            self.correct = self.correct + (out.logits.argmax(-1) == out.targets).sum()
            self.seen += out.targets.numel()
        self.steps += 1

    def means(self, device: torch.device) -> dict[str, float]:
        """``train_loss``, the step metrics and ``train_acc``, averaged over steps (and processes)."""
        keys = sorted(self.sums)
        values = [torch.as_tensor(self.sums[k], dtype=torch.float64, device=device) for k in keys]
        counts = [torch.as_tensor(c, dtype=torch.float64, device=device) for c in (self.steps, self.correct, self.seen)]
        packed = torch.stack(values + counts)
        if _world_size() > 1:
            dist.all_reduce(packed)
        steps, correct, seen = packed[-3:].tolist()
        totals = dict(zip(keys, packed[:-3].tolist()))
        record = {k: totals[k] / steps for k in ["train_loss", *(k for k in self.sums if k != "train_loss")]}
        if seen:
            record["train_acc"] = correct / seen
        return record


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _is_main() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def distributed_loader(
    dataset: Dataset, batch_size: int, *, shuffle: bool = True, seed: int = 0, drop_last: bool = False, **kwargs: Any
) -> DataLoader:
    """A loader over this process's shard of ``dataset``, for :func:`fit` under ``torchrun``.

    A ``DistributedSampler`` gives process ``r`` of ``W`` the items ``r, r + W, r + 2W, ...`` of the
    (shuffled with ``seed`` + epoch when ``shuffle``) order, padded so every process gets as many
    batches; ``fit`` calls its ``set_epoch`` each epoch. The global batch is ``W * batch_size``.
    Without an initialised process group it is the whole dataset (one process of one).

    Args:
        dataset: the full dataset, the same on every process.
        batch_size: the batch of one process.
        shuffle: reshuffle every epoch (the same permutation on every process).
        seed: seed of that shuffle.
        drop_last: drop the tail that does not split evenly instead of padding with repeats.
        **kwargs: passed to ``DataLoader`` (``num_workers``, ``pin_memory``, ...).

    Returns:
        The ``DataLoader``.
    """
    initialised = dist.is_available() and dist.is_initialized()
    sampler: DistributedSampler[Any] = DistributedSampler(
        dataset, num_replicas=dist.get_world_size() if initialised else 1, rank=dist.get_rank() if initialised else 0,
        shuffle=shuffle, seed=seed, drop_last=drop_last,
    )
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **kwargs)


def _rng_state() -> dict[str, Any]:
    # numpy's global generator is an MT19937: its legacy state is the tuple (name, key, pos, has_gauss, gauss)
    _, key, pos, *_ = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": torch.from_numpy(key.astype(np.int64)),
        "numpy_pos": int(pos),
        "python": torch.tensor(random.getstate()[1], dtype=torch.int64),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    random.setstate((3, tuple(int(v) for v in state["python"].tolist()), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def fit(
    model: nn.Module,
    train_loader: Iterable[Any],
    num_epochs: int,
    *,
    optimizer: Optimizer | None = None,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    scheduler: Callable[[Optimizer, int], LRScheduler] | None = None,
    val_loader: Iterable[Any] | None = None,
    step_fn: StepFn = classification_step,
    device: str | torch.device | None = None,
    amp: bool = True,
    grad_clip: float | None = None,
    channels_last: bool = False,
    checkpoint_path: str | Path | None = None,
    resume: bool = True,
    progress: bool = True,
    desc: str = "train",
    steps_per_epoch: int | None = None,
    time_limit: float | None = None,
    config: Mapping[str, Any] | None = None,
    data_fingerprint: str | None = None,
) -> History:
    """Train ``model`` for ``num_epochs``; return the per-epoch :class:`History`.

    Each epoch records ``epoch``, ``step`` (optimizer steps so far), ``train_loss`` (and ``train_acc``
    when the step returns logits), any extra step metrics, ``val_loss``/``val_acc`` when ``val_loader``
    is given, the LR at the epoch's end and the epoch's wall time in ``seconds`` (``meta_train``
    records ``step``, ``train_loss`` and ``seconds`` with the same meanings). ``step_fn`` follows the
    rule of :class:`StepOutput`: it returns the loss (or its own gradients) and the loop back-propagates. With ``checkpoint_path``, the model, optimizer, scheduler,
    scaler, RNG states (the global ones and those of seeded loaders: a ``DataLoader``'s and its
    sampler's generators, or a loader's own ``state_dict``, see :func:`tlhelpers.core.checkpoint.loader_state`),
    history and the run's identity (``config``, ``data_fingerprint``) are saved atomically after every
    epoch; a later call with the same arguments resumes after the last finished epoch, says so in one
    printed line (``resumed from run.pt: epoch 5 of 8 already done, ...``) and ends with the same result
    as an uninterrupted run (bit for bit on CPU; only persistent workers are seeded anew on resume, so
    random augmentation inside them may differ). A call with other settings or data is refused
    rather than silently continuing the old run.

    With ``time_limit``, training stops at the end of the first epoch that finishes after the limit
    (so at least one epoch runs): the history's ``stopped_early`` is then True and ``len(history)``
    tells how far it got (``history.planned`` is ``num_epochs``). The learning-rate schedule keeps
    its plan for ``num_epochs``; with ``checkpoint_path``, calling again continues the run.

    Under ``torchrun`` (an initialised ``torch.distributed`` process group, one process per GPU, or
    gloo processes on CPU) the same call trains with ``DistributedDataParallel``: ``step_fn`` gets
    the wrapped model (the module itself is ``model.module``), each process should get its shard of
    the data (:func:`distributed_loader`), the loader's ``sampler.set_epoch`` is called every epoch,
    the epoch's metrics are averaged over the processes, and only rank 0 shows progress, prints and
    writes the checkpoint. The returned History is the same on every process.

    Args:
        model: the network; moved to ``device``.
        train_loader: yields batches that ``step_fn`` understands (``(x, y)`` by default).
        num_epochs: epochs to train in total (including any resumed ones).
        optimizer: a ready optimizer (e.g. with parameter groups); else AdamW over trainable params.
        lr: learning rate of the default optimizer.
        weight_decay: weight decay of the default optimizer.
        scheduler: a factory ``(optimizer, total_steps) -> LRScheduler`` stepped after every batch,
            e.g. :func:`tlhelpers.training.schedules.warmup_cosine`.
        val_loader: evaluated with :func:`evaluate` after every epoch.
        step_fn: computes a :class:`StepOutput` from ``(model, batch, state)``.
        device: see :func:`tlhelpers.core.runtime.get_device`.
        amp: mixed precision on CUDA (bf16, or fp16 with a grad scaler); ignored on CPU.
        grad_clip: clip the global gradient norm to this value.
        channels_last: use the channels-last memory format (faster convolutions on recent GPUs).
        checkpoint_path: where to save after every epoch and resume from.
        resume: resume from ``checkpoint_path`` when it exists.
        progress: show tqdm progress bars (a widget in Jupyter, text elsewhere).
        desc: the progress bar's label.
        steps_per_epoch: batches per epoch when ``train_loader`` has no ``len`` (or to cap it).
        time_limit: seconds of wall time for this call, checked after every epoch; None for no limit.
        config: the run's own settings (JSON-able, e.g. a script's arguments), stored in the checkpoint
            with what ``fit`` knows itself (model class and parameter shapes, optimizer class and each
            group's hyper-parameters, steps per epoch, gradient clipping, the scheduler and its planned
            total steps). Resuming with any of these changed is refused; ``num_epochs`` may grow when no
            scheduler plans on it. A checkpoint written before runs had this identity is resumed with a
            warning.
        data_fingerprint: a hash of the training data (:func:`tlhelpers.core.checkpoint.fingerprint_dataset`),
            stored and compared the same way.

    Returns:
        The run's :class:`History`.

    Raises:
        ValueError: if ``num_epochs`` < 1 or ``time_limit`` < 0, nothing is trainable, the
            loader's length is unknown, or ``train_loader`` or ``val_loader`` is empty (checked
            before training where they have a length).
        tlhelpers.core.checkpoint.CheckpointError: if the checkpoint to resume from is unreadable, unsafe, or
            was written by another run (the message names each changed setting; ``resume=False`` starts
            over and overwrites it).
    """
    if num_epochs < 1:
        raise ValueError(f"num_epochs={num_epochs} must be at least 1.")
    if time_limit is not None and time_limit < 0:
        raise ValueError(f"time_limit={time_limit} must be a number of seconds >= 0, or None for no limit.")
    started = time.perf_counter()
    dev = get_device(device)
    if _world_size() > 1 and dev.type == "cuda":
        if dev.index is None:  # torchrun: one GPU per process
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", dist.get_rank() % torch.cuda.device_count())))
        torch.cuda.set_device(dev)
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if optimizer is None:
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters; unfreeze some layers before fit().")
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if steps_per_epoch is None:
        try:
            steps_per_epoch = len(train_loader)  # type: ignore[arg-type]
        except TypeError:
            raise ValueError("train_loader has no len(); pass steps_per_epoch=.") from None
    else:
        n_batches = _length(train_loader)
        steps_per_epoch = min(steps_per_epoch, n_batches) if n_batches is not None else steps_per_epoch
    if steps_per_epoch < 1:
        raise ValueError(f"train_loader is empty ({steps_per_epoch} batches per epoch); give it data, or a batch_size "
                         "no larger than the dataset when drop_last=True.")
    if val_loader is not None and _length(val_loader) == 0:
        raise ValueError("val_loader is empty (0 batches); give the validation split some data, or pass val_loader=None.")
    total_steps = steps_per_epoch * num_epochs
    # Before the scheduler exists: its construction rewrites each group's lr.
    known: dict[str, Any] = {"steps_per_epoch": steps_per_epoch, "grad_clip": grad_clip}
    if scheduler is not None:  # the schedule's plan: with one, more epochs would be another run
        factory = getattr(scheduler, "func", scheduler)
        known.update(scheduler=getattr(factory, "__qualname__", type(factory).__qualname__), total_steps=total_steps)
    identity: dict[str, Any] = {}
    if checkpoint_path is not None:  # only runs that checkpoint need one
        identity = run_identity(model, optimizer, config=config, data_fingerprint=data_fingerprint, **known)
    sched = scheduler(optimizer, total_steps) if scheduler is not None else None
    scaler = make_grad_scaler(dev, amp)
    history = History(planned=num_epochs)
    start_epoch = 0

    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    if ckpt is not None and resume and ckpt.exists():
        # On the CPU: RNG states must stay CPU tensors; load_state_dict moves weights and optimizer state.
        state = safe_load(ckpt, map_location="cpu")
        check_identity(ckpt, state.get("identity"), identity)  # before any weights: name what changed
        state = restore_training(ckpt, model, optimizer, sched, scaler, state=state)
        for loader, key in ((train_loader, "train"), (val_loader, "val")):
            if key in state.get("loaders", {}):  # seeded loaders continue their streams
                load_loader_state(loader, state["loaders"][key])
        history = History.from_dict(state["history"])
        history.planned = num_epochs
        start_epoch = int(state["epoch"])
        _set_rng_state(state["rng"])
        left = ("nothing left to train" if start_epoch >= num_epochs
                else f"training epoch {num_epochs}" if start_epoch + 1 == num_epochs
                else f"training epochs {start_epoch + 1}-{num_epochs}")
        if _is_main():
            print(f"{desc}: resumed from {ckpt.name}: epoch {start_epoch} of {num_epochs} already done, {left}")

    distributed = _world_size() > 1
    main = _is_main()
    if not main and progress:
        progress = False  # one set of progress bars: rank 0's
    net: nn.Module = model
    if distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[dev] if dev.type == "cuda" else None)
    loader_sampler = getattr(train_loader, "sampler", None)
    step = int(history["step"][-1]) if "step" in history.keys else start_epoch * steps_per_epoch
    epochs = range(start_epoch, num_epochs)
    epoch_bar = tqdm(epochs, desc=desc, unit="epoch", disable=not progress, initial=start_epoch, total=num_epochs)
    for epoch in epoch_bar:
        t0 = time.perf_counter()
        train_mode(net)
        set_epoch = getattr(loader_sampler, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)  # a DistributedSampler's shuffle changes every epoch
        tally = _Tally()
        # The bar counts steps but never holds the loader: a notebook's bars live on in reference
        # cycles until the garbage collector runs, and a loader they held would keep its worker
        # processes (and their file descriptors) alive that long.
        batch_bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}", leave=False, disable=not progress)
        for i, batch in enumerate(train_loader):
            if i >= steps_per_epoch:
                break
            batch_bar.update()
            batch = to_device(batch, dev, channels_last)
            ts = TrainState(step=epoch * steps_per_epoch + i, total_steps=total_steps, epoch=epoch)
            with autocast(dev, amp):
                out = step_fn(net, batch, ts)
            optimizer.zero_grad(set_to_none=True)
            apply_gradients(net, out, scaler)
            if scaler is not None:
                scaler.unscale_(optimizer)
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            if sched is not None:
                sched.step()
            step += 1
            tally.add(out)
            if progress and i % 25 == 0:
                batch_bar.set_postfix(loss=f"{out.loss.item():.3f}")
        batch_bar.close()
        if not tally.steps:
            raise ValueError(f"train_loader yielded no batches in epoch {epoch + 1}; give it data (an exhausted "
                             "iterator cannot be reused: pass a DataLoader).")
        record: dict[str, float] = {"epoch": epoch + 1, "step": step}
        record.update(tally.means(dev))
        if val_loader is not None:
            val = _evaluate_all(model, val_loader, dev, amp, channels_last)
            record["val_loss"], record["val_acc"] = val["loss"], val["acc"]
        record["lr"] = optimizer.param_groups[0]["lr"]
        record["seconds"] = time.perf_counter() - t0
        out_of_time = time_limit is not None and epoch + 1 < num_epochs and time.perf_counter() - started >= time_limit
        if distributed:  # rank 0's record and decision: the same History, and the same last epoch, everywhere
            shared: list[Any] = [record, out_of_time]
            dist.broadcast_object_list(shared, src=0)
            record, out_of_time = shared
        history.append(record)
        epoch_bar.set_postfix({k: f"{v:.3f}" for k, v in record.items() if k in ("train_loss", "val_acc")})
        if ckpt is not None and main:
            atomic_save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": sched.state_dict() if sched is not None else None,
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "history": history.to_dict(),
                    "epoch": epoch + 1,
                    "rng": _rng_state(),
                    "loaders": {"train": loader_state(train_loader), "val": loader_state(val_loader)},
                    "identity": identity,
                },
                ckpt,
            )
        if out_of_time:
            history.stopped_early = True
            break
    epoch_bar.close()
    return history


def _evaluate_all(model: nn.Module, loader: Iterable[Any], dev: torch.device, amp: bool, channels_last: bool) -> dict[str, float]:
    """:func:`evaluate`, averaged over the processes of a distributed run (each its own shard)."""
    if _world_size() == 1:
        return evaluate(model, loader, device=dev, amp=amp, channels_last=channels_last)
    logits, labels = predict(model, loader, device=dev, amp=amp, channels_last=channels_last)
    sums = torch.tensor([F.cross_entropy(logits, labels, reduction="sum").item(),
                         (logits.argmax(1) == labels).sum().item(), len(labels)], dtype=torch.float64, device=dev)
    if _world_size() > 1:
        dist.all_reduce(sums)
    loss, correct, n = sums.tolist()
    return {"loss": loss / n, "acc": correct / n}


@torch.inference_mode()
def predict(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    device: str | torch.device | None = None,
    amp: bool = True,
    channels_last: bool = False,
    progress: bool = False,
) -> tuple[Tensor, Tensor]:
    """Logits and labels over a loader of ``(x, y)`` batches, in eval mode, gathered on the CPU.

    Shape:
        Returns ``(N, num_classes)`` float32 logits and ``(N,)`` labels.
    """
    dev = get_device(device)
    model.to(dev).eval()
    all_logits, all_labels = [], []
    bar = tqdm(total=_length(loader), desc="predict", leave=False, disable=not progress)  # never holds the loader
    for batch in loader:
        bar.update()
        x, y = to_device(batch[0], dev, channels_last), batch[1]
        with autocast(dev, amp):
            logits = model(x)
        all_logits.append(logits.float().cpu())
        all_labels.append(torch.as_tensor(y).cpu())
    bar.close()
    if not all_logits:
        raise ValueError("the loader yielded no batches; give it data (an exhausted iterator cannot be reused).")
    return torch.cat(all_logits), torch.cat(all_labels)


def evaluate(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    device: str | torch.device | None = None,
    amp: bool = True,
    channels_last: bool = False,
    progress: bool = False,
) -> dict[str, float]:
    """Mean cross-entropy ``loss`` and top-1 ``acc`` of ``model`` over ``loader``."""
    logits, labels = predict(model, loader, device=device, amp=amp, channels_last=channels_last, progress=progress)
    return {
        "loss": F.cross_entropy(logits, labels).item(),
        "acc": (logits.argmax(1) == labels).float().mean().item(),
    }
