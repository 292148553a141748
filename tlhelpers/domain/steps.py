"""Training steps for :func:`tlhelpers.training.engine.fit` on paired batches ``(source_x, source_y, target_x)``.

Each step returns ONE combined loss; ``fit`` then does one ``zero_grad``, one ``backward`` and one
optimizer step per iteration. (The chapter's source article calls ``backward``/``step`` three
times per iteration without ``zero_grad``, so gradients pile up across its three losses.) No step
receives target labels: :class:`tlhelpers.domain.paired.PairedLoader` never yields them.

Example:
    >>> from tlhelpers.training.engine import fit
    >>> history = fit(DANN(DigitNet()), paired_loader, num_epochs=10, step_fn=dann_step)
    >>> history["domain_acc"], history["lambda"]
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tlhelpers.domain.dann import DANN, domain_accuracy
from tlhelpers.domain.grl import grl_lambda
from tlhelpers.domain.mmd import MultiKernelMMD
from tlhelpers.models.api import forward_features, forward_head
from tlhelpers.training.engine import StepOutput, TrainState


def _unpack(batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if not isinstance(batch, (tuple, list)) or len(batch) != 3:
        raise ValueError("expected a (source_x, source_y, target_x) batch; wrap the loaders in PairedLoader.")
    xs, ys, xt = batch
    if xs.shape[1:] != xt.shape[1:]:
        raise ValueError(
            f"source images {tuple(xs.shape[1:])} and target images {tuple(xt.shape[1:])} differ; "
            "load both with tlhelpers.course.domain_pairs.load_pair, which resizes to 3x32x32."
        )
    return xs, ys, xt


def source_only_step(model: nn.Module, batch: Any, state: TrainState) -> StepOutput:
    """Cross-entropy on the source batch; the target batch is ignored (the no-adaptation baseline)."""
    xs, ys, _ = _unpack(batch)
    logits = model(xs)
    return StepOutput(F.cross_entropy(logits, ys), logits.detach(), ys)


def dann_step(model: DANN, batch: Any, state: TrainState) -> StepOutput:
    """DANN: source cross-entropy plus the domain loss through the gradient reversal layer.

    Source and target go through the feature extractor in one batch. The discriminator gets the
    plain gradient of the domain loss (learn to tell the domains apart); the gradient reversal
    layer hands the feature extractor ``-lambda`` times that gradient (make them indistinguishable),
    with ``lambda = grl_lambda(state.progress, model.gamma)``.

    Metrics: ``class_loss``, ``domain_loss``, ``domain_acc`` (0.5 is chance) and ``lambda``.
    """
    xs, ys, xt = _unpack(batch)
    features = model.forward_features(torch.cat([xs, xt]))
    logits = model.forward_head(features[: len(xs)])
    class_loss = F.cross_entropy(logits, ys)
    lambda_ = grl_lambda(state.progress, model.gamma)
    domain_logits = model.domain_logits(features, lambda_).float()
    is_target = torch.cat([torch.zeros(len(xs)), torch.ones(len(xt))]).to(domain_logits.device)
    domain_loss = F.binary_cross_entropy_with_logits(domain_logits, is_target)
    metrics: dict[str, float | Tensor] = {
        "class_loss": class_loss.item(),
        "domain_loss": domain_loss.item(),
        "domain_acc": domain_accuracy(domain_logits, is_target),
        "lambda": lambda_,
    }
    return StepOutput(class_loss + domain_loss, logits.detach(), ys, metrics)


class MMDStep:
    """Source cross-entropy plus ``weight * ramp * MMD(source features, target features)``.

    Args:
        mmd: the discrepancy; a biased :class:`MultiKernelMMD` by default.
        weight: the trade-off between classification and alignment.
        gamma: ramp the weight with :func:`grl_lambda` like DANN (fair comparison); None for a
            constant weight.

    Metrics: ``class_loss``, ``mmd`` and ``lambda`` (the ramp factor).
    """

    def __init__(self, mmd: MultiKernelMMD | None = None, weight: float = 1.0, gamma: float | None = 10.0) -> None:
        if weight < 0:
            raise ValueError(f"weight={weight} must be >= 0.")
        self.mmd = mmd if mmd is not None else MultiKernelMMD()
        self.weight = float(weight)
        self.gamma = gamma

    def __call__(self, model: nn.Module, batch: Any, state: TrainState) -> StepOutput:
        xs, ys, xt = _unpack(batch)
        features = forward_features(model, torch.cat([xs, xt])).float()
        logits = forward_head(model, features[: len(xs)])
        class_loss = F.cross_entropy(logits, ys)
        ramp = 1.0 if self.gamma is None else grl_lambda(state.progress, self.gamma)
        discrepancy = self.mmd(features[: len(xs)], features[len(xs):])
        metrics = {"class_loss": class_loss.item(), "mmd": discrepancy.item(), "lambda": ramp}
        return StepOutput(class_loss + self.weight * ramp * discrepancy, logits.detach(), ys, metrics)

    def __repr__(self) -> str:
        return f"MMDStep(weight={self.weight}, gamma={self.gamma}, mmd={self.mmd!r})"
