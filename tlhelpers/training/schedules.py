"""Per-step learning-rate schedules, built from the planned number of steps.

Each factory takes ``(optimizer, total_steps)`` so :func:`tlhelpers.training.engine.fit` can build it once it
knows how many steps the run has; pass ``functools.partial(warmup_cosine, warmup_steps=100)`` to fix
the other arguments.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(
    optimizer: Optimizer, total_steps: int, warmup_steps: int | float = 0.05, final_scale: float = 0.0
) -> LambdaLR:
    """Linear warm-up from 0, then cosine decay to ``final_scale`` times each group's base LR.

    Args:
        optimizer: any torch optimizer; each parameter group keeps its own base LR (so
            discriminative learning rates keep their ratios).
        total_steps: planned optimizer steps for the whole run.
        warmup_steps: steps of warm-up, or a fraction of ``total_steps`` if below 1.
        final_scale: LR multiplier reached at the last step.

    Raises:
        ValueError: if ``total_steps`` is not positive.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps={total_steps} must be positive; check num_epochs and the loader length.")
    warm = int(round(warmup_steps * total_steps)) if 0 <= warmup_steps < 1 else int(warmup_steps)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        return final_scale + (1 - final_scale) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def inverse_decay(
    optimizer: Optimizer, total_steps: int, alpha: float = 10.0, beta: float = 0.75
) -> LambdaLR:
    """The DANN paper's annealing ``lr_p = lr_0 / (1 + alpha * p) ** beta``, with ``p = step / total_steps``.

    Args:
        optimizer: any torch optimizer.
        total_steps: planned optimizer steps, so ``p`` runs from 0 to 1 over the run.
        alpha: the paper's 10.
        beta: the paper's 0.75.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps={total_steps} must be positive; check num_epochs and the loader length.")
    return LambdaLR(optimizer, lambda step: (1 + alpha * min(1.0, step / total_steps)) ** -beta)
