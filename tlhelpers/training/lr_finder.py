"""The learning-rate range test (Smith 2017, "Cyclical learning rates"; fastai's ``lr_find``).

Train for a few batches while the learning rate grows exponentially from tiny to huge, and watch
the loss: flat while the LR is too small to matter, falling once it is large enough, exploding when
it is too large. A good LR lies on the falling part. The test leaves the model as it found it, so it
can run before :func:`tlhelpers.training.engine.fit` on the very model that is then trained.

Example:
    >>> result = lr_range_test(model, train_loader)
    >>> result.suggestion          # e.g. 3e-3
    >>> fig = plot_lr_finder(result)
    >>> history = fit(model, train_loader, num_epochs=3, lr=result.suggestion)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.optim import Optimizer
from tqdm.auto import tqdm

from tlhelpers.core.checkpoint import load_loader_state, loader_state
from tlhelpers.core.runtime import autocast, get_device, make_grad_scaler
from tlhelpers.training.engine import (
    StepFn,
    TrainState,
    _length,
    _rng_state,
    _set_rng_state,
    apply_gradients,
    classification_step,
    to_device,
    train_mode,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The optimizers ``lr_range_test`` builds by name (their LR is set at every step).
OPTIMIZERS: dict[str, Callable[[list[nn.Parameter]], Optimizer]] = {
    "adamw": lambda params: torch.optim.AdamW(params, lr=0.0, weight_decay=0.0),  # fit()'s default optimizer
    "adam": lambda params: torch.optim.Adam(params, lr=0.0),
    "sgd": lambda params: torch.optim.SGD(params, lr=0.0, momentum=0.9),
}


@dataclass
class LRFinderResult:
    """What :func:`lr_range_test` measured.

    Attributes:
        lrs: the learning rate of each step (geometric from ``start_lr`` towards ``end_lr``).
        losses: the smoothed loss of each step (bias-corrected exponential moving average).
        raw_losses: the loss of each step's batch, as the step returned it.
        suggestion: the suggested learning rate (fastai's "valley", see :func:`suggest_lr`); None when
            fewer than two steps ran.
        stopped_early: True when the loss diverged (or became NaN/inf) before ``num_steps`` steps.
    """

    lrs: list[float]
    losses: list[float]
    raw_losses: list[float]
    suggestion: float | None
    stopped_early: bool

    def __repr__(self) -> str:
        shown = f"{self.suggestion:.2e}" if self.suggestion is not None else "none"
        stop = ", stopped early (loss diverged)" if self.stopped_early else ""
        return f"LRFinderResult({len(self.lrs)} steps, suggestion={shown}{stop})"


def smooth_losses(raw: Sequence[float], smooth: float = 0.98) -> list[float]:
    """Bias-corrected exponential moving average of ``raw`` (Adam's correction, as fastai smooths).

    ``avg_i = smooth * avg_{i-1} + (1 - smooth) * raw_i`` from ``avg_{-1} = 0``, divided by
    ``1 - smooth ** (i + 1)`` so that the first values are not pulled towards 0.

    Args:
        raw: the per-step losses.
        smooth: the EMA's decay in ``[0, 1)``; 0 returns ``raw`` unchanged.

    Returns:
        The smoothed losses, one per raw loss.

    Raises:
        ValueError: if ``smooth`` is outside ``[0, 1)``.
    """
    if not 0.0 <= smooth < 1.0:
        raise ValueError(f"smooth={smooth} must lie in [0, 1), e.g. 0.98 (0 turns smoothing off).")
    avg, out = 0.0, []
    for i, value in enumerate(raw):
        avg = smooth * avg + (1.0 - smooth) * float(value)
        out.append(avg / (1.0 - smooth ** (i + 1)))
    return out


def suggest_lr(lrs: Sequence[float], losses: Sequence[float]) -> float | None:
    """fastai's "valley" suggestion: half-way down the longest descent of the smoothed loss.

    The longest *decreasing subsequence* of the losses marks the valley, which tolerates the noise
    that a few batches leave even in a smoothed curve. The suggestion lies about half-way along it
    (fastai's index arithmetic: ``start + 1.5 * (end - start) / 3`` with ``start = end - length``): well past the flat start, well before the minimum, beyond which the
    loss is about to blow up. The steepest point of the curve (the older rule) is a derivative of a
    noisy curve and often lands on a spike or in the flat start; fastai made "valley" its default
    for that reason, and so does this course. The first 10% and the last 5 points are left out (when
    at least 5 remain): the start is dominated by the smoothing's warm-up, the end by the divergence.

    Args:
        lrs: the learning rate of each step.
        losses: the smoothed loss of each step.

    Returns:
        The suggested learning rate; None for fewer than two points.

    Raises:
        ValueError: if ``lrs`` and ``losses`` differ in length.
    """
    if len(lrs) != len(losses):
        raise ValueError(f"{len(lrs)} learning rates but {len(losses)} losses; pass one loss per learning rate.")
    n = len(losses)
    if n < 2:
        return None
    lo, hi = n // 10, n - 5
    if hi - lo < 5:
        lo, hi = 0, n
    vals = [float(v) for v in losses[lo:hi]]
    length = [1] * len(vals)  # length of the longest decreasing subsequence ending at each point
    end = 0
    for i in range(1, len(vals)):
        for j in range(i):
            if vals[i] < vals[j] and length[i] < length[j] + 1:
                length[i] = length[j] + 1
        if length[end] < length[i]:
            end = i
    start = max(0, end - length[end])
    section = (end - start) / 3
    return float(lrs[lo + start + int(section) + int(section / 2)])


def _batches(loader: Iterable[Any]) -> Generator[Any, None, None]:
    """The loader's batches, starting over whenever a pass ends (a loader shorter than the test)."""
    passes = 0
    while True:
        seen = 0
        for batch in loader:
            seen += 1
            yield batch
        passes += 1
        if seen == 0:
            if passes == 1:
                raise ValueError("the loader yielded no batches; give it data (an exhausted iterator cannot be reused).")
            raise ValueError("the loader ran out and cannot start over (an iterator); pass a DataLoader or a list.")


def lr_range_test(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    step_fn: StepFn | None = None,
    optimizer: str | Callable[[list[nn.Parameter]], Optimizer] = "adamw",
    device: str | torch.device | None = None,
    smooth: float = 0.98,
    diverge_factor: float = 4.0,
    amp: bool = True,
    progress: bool = True,
) -> LRFinderResult:
    """Train ``num_steps`` batches at exponentially growing learning rates and record the loss.

    Step ``i`` uses ``start_lr * (end_lr / start_lr) ** (i / (num_steps - 1))``, so the first step runs at
    ``start_lr`` and the last at ``end_lr``. The test stops early once the smoothed loss exceeds
    ``diverge_factor`` times the best smoothed loss so far (that step is recorded) or a loss is NaN
    or infinite (that step is not). It trains the model in training mode as ``fit`` does
    (:func:`~tlhelpers.training.engine.train_mode`: frozen BatchNorm layers stay in eval mode) and
    optimises only the parameters with ``requires_grad``, so with a frozen backbone it finds the
    head's learning rate.

    The model is left exactly as it was: its parameters, buffers (BatchNorm statistics), gradients,
    training modes and device (when it sits on one) are restored afterwards, and the optimizer is the test's own. The
    random state is restored too (torch, CUDA, NumPy and Python's global generators, and the
    loader's own generators): the batches the test drew and the dropout masks it used leave no
    trace, so a notebook trains the same model whether or not the LR-finder cell ran.

    Args:
        model: the network, with the layers to tune trainable.
        loader: batches for ``step_fn``; started over when it has fewer than ``num_steps`` batches.
        start_lr: the first learning rate.
        end_lr: the last learning rate (reached only if the loss does not diverge first).
        num_steps: the number of steps (at least 5).
        step_fn: computes a batch's :class:`~tlhelpers.training.engine.StepOutput`, as in ``fit``;
            default :func:`~tlhelpers.training.engine.classification_step` (cross-entropy).
        optimizer: ``"adamw"`` (``fit``'s default, no weight decay), ``"adam"``, ``"sgd"`` (momentum
            0.9), or a callable that builds an optimizer from the list of trainable parameters. With
            several parameter groups (discriminative LRs, :func:`~tlhelpers.training.param_groups.param_groups`)
            the group with the largest initial LR follows the schedule and the others keep their ratio to it.
        device: where to run; default as ``fit`` (``TLH_DEVICE``, else cuda, mps, cpu).
        smooth: decay of the loss's exponential moving average, in ``[0, 1)``.
        diverge_factor: stop once the smoothed loss exceeds this multiple of the best one (> 1).
        amp: mixed precision on CUDA, as in ``fit``.
        progress: show a progress bar.

    Returns:
        The :class:`LRFinderResult` (``lrs``, smoothed ``losses``, ``raw_losses``, ``suggestion``,
        ``stopped_early``).

    Raises:
        ValueError: if ``start_lr`` is not positive or not below ``end_lr``, ``num_steps < 5``,
            ``smooth`` is outside ``[0, 1)``, ``diverge_factor <= 1``, ``optimizer`` is an unknown name,
            the model has nothing trainable, or the loader is empty.
        TypeError: if the ``optimizer`` callable does not return a ``torch.optim.Optimizer``.
    """
    if not 0.0 < start_lr < end_lr:
        raise ValueError(f"start_lr={start_lr} and end_lr={end_lr} must satisfy 0 < start_lr < end_lr, e.g. 1e-7 and 10.")
    if num_steps < 5:
        raise ValueError(f"num_steps={num_steps} is too few for a range test; use at least 5 (100 is typical).")
    if not 0.0 <= smooth < 1.0:
        raise ValueError(f"smooth={smooth} must lie in [0, 1), e.g. 0.98 (0 turns smoothing off).")
    if not diverge_factor > 1.0:
        raise ValueError(f"diverge_factor={diverge_factor} must be greater than 1, e.g. 4.")
    if isinstance(optimizer, str):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; use one of {', '.join(OPTIMIZERS)} or a callable.")
        make_optimizer = OPTIMIZERS[optimizer]
    else:
        make_optimizer = optimizer
    if _length(loader) == 0:
        raise ValueError("the loader is empty (0 batches); give it data, or a batch_size no larger than the dataset "
                         "when drop_last=True.")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters; unfreeze some layers before lr_range_test().")
    step_fn = step_fn if step_fn is not None else classification_step
    dev = get_device(device)

    # Everything the test changes, to put back afterwards.
    saved_state = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    saved_modes = {m: m.training for m in model.modules()}
    saved_grads = [(p, p.grad) for p in model.parameters()]
    devices = {t.device for t in (*model.parameters(), *model.buffers())}
    saved_rng = _rng_state()
    saved_loader = loader_state(loader)

    lrs: list[float] = []
    raw: list[float] = []
    smoothed: list[float] = []
    stopped_early = False
    batches = _batches(loader)
    bar = tqdm(total=num_steps, desc="lr range test", leave=False, disable=not progress)  # never holds the loader
    try:
        if len(devices) == 1:  # a model split over several devices (model parallel) stays where it is
            model.to(dev)
        opt = make_optimizer(params)
        if not isinstance(opt, Optimizer):
            raise TypeError(f"the optimizer callable returned {type(opt).__name__}, not a torch.optim.Optimizer; "
                            "return e.g. torch.optim.SGD(params, lr=0.0).")
        top = max(float(g["lr"]) for g in opt.param_groups)
        ratios = [float(g["lr"]) / top if top > 0 else 1.0 for g in opt.param_groups]
        scaler = make_grad_scaler(dev, amp)
        train_mode(model)
        ratio = end_lr / start_lr
        avg, best = 0.0, math.inf
        for i in range(num_steps):
            lr = start_lr * ratio ** (i / (num_steps - 1))
            for group, r in zip(opt.param_groups, ratios):
                group["lr"] = lr * r
            batch = to_device(next(batches), dev)
            with autocast(dev, amp):
                out = step_fn(model, batch, TrainState(step=i, total_steps=num_steps, epoch=0))
            loss = float(out.loss.detach().float().item())
            if not math.isfinite(loss):
                stopped_early = True
                break
            opt.zero_grad(set_to_none=True)
            apply_gradients(model, out, scaler)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            avg = smooth * avg + (1.0 - smooth) * loss
            value = avg / (1.0 - smooth ** (i + 1))
            lrs.append(lr)
            raw.append(loss)
            smoothed.append(value)
            bar.update()
            bar.set_postfix(lr=f"{lr:.1e}", loss=f"{value:.3f}")
            best = min(best, value)
            if value > diverge_factor * best:
                stopped_early = i + 1 < num_steps
                break
    finally:
        batches.close()  # ends the loader's pass (and its worker processes) now
        bar.close()
        if len(devices) == 1:
            model.to(next(iter(devices)))
        model.load_state_dict(saved_state)
        for module, mode in saved_modes.items():
            module.training = mode
        for p, grad in saved_grads:
            p.grad = grad
        _set_rng_state(saved_rng)
        load_loader_state(loader, saved_loader)
    return LRFinderResult(lrs, smoothed, raw, suggest_lr(lrs, smoothed), stopped_early)


def plot_lr_finder(result: LRFinderResult) -> Figure:
    """The loss against the learning rate (log axis), with the suggestion marked and labelled.

    The smoothed loss is drawn solid and the raw per-batch loss faint behind it. The y axis is cut
    where the diverging tail would squash the valley into a flat line.

    Args:
        result: what :func:`lr_range_test` returned.

    Returns:
        The closed figure (shown once, as a cell's value or with ``display``).

    Raises:
        ValueError: if the result holds no steps.
    """
    import matplotlib.pyplot as plt

    from tlhelpers.core.style import LABEL_SIZE, finish

    if not result.lrs:
        raise ValueError("the result holds no steps; run lr_range_test first (did the loss diverge at once?).")
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.plot(result.lrs, result.raw_losses, color="#999999", alpha=0.4, linewidth=1, label="loss per batch")
    ax.plot(result.lrs, result.losses, color="#0072B2", linewidth=2, label="smoothed loss")
    ax.set_xscale("log")
    low, first = min(result.losses), result.losses[0]
    high = max(result.losses)
    if first > low:
        high = min(high, first + 2 * (first - low))  # keep the valley readable: cut the diverging tail
    pad = 0.05 * (high - low) or 0.05 * abs(high) or 0.05
    ax.set_ylim(low - pad, high + pad)
    lr = result.suggestion
    if lr is not None:
        i = min(range(len(result.lrs)), key=lambda k: abs(math.log(result.lrs[k] / lr)))
        ax.axvline(lr, color="#D55E00", linestyle="--", linewidth=1.2)
        ax.plot([lr], [result.losses[i]], "o", color="#D55E00", markersize=7, label=f"suggested lr = {lr:.1e}")
        ax.annotate(f"suggested lr = {lr:.1e}", (lr, result.losses[i]), xytext=(8, 8), textcoords="offset points",
                    color="#D55E00", fontsize=9)
    ax.set_xlabel("learning rate (log scale)", fontsize=LABEL_SIZE)
    ax.set_ylabel("training loss", fontsize=LABEL_SIZE)
    title = "learning-rate range test"
    if result.stopped_early:
        title += " (stopped early: the loss diverged)"
    ax.set_title(title, fontsize=LABEL_SIZE)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, frameon=False)
    return finish(fig)


__all__ = ["OPTIMIZERS", "LRFinderResult", "lr_range_test", "plot_lr_finder", "smooth_losses", "suggest_lr"]
