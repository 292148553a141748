"""One function to train a domain-adaptation method on a pair, shared by the notebook and benchmark.

Every method gets the same network, optimizer, learning-rate annealing, number of steps and
seed; only the objective differs:

- ``source_only``: cross-entropy on the source (the lower bound, no adaptation);
- ``dann``: source cross-entropy plus the adversarial domain loss through the GRL;
- ``mmd``: source cross-entropy plus the multi-kernel MMD between source and target features;
- ``oracle``: cross-entropy on the *labelled* target training set (the upper bound; the only
  method that sees target labels, which is why it is not domain adaptation).

Model selection never looks at target labels: the schedule is fixed and the last epoch is scored.

Example:
    >>> result = train_method("dann", pair, DAConfig(num_epochs=5), seed=0)
    >>> result.target_acc
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from tlhelpers.core.checkpoint import fingerprint_dataset
from tlhelpers.core.runtime import loader_kwargs, seed_everything
from tlhelpers.course.domain_pairs import DomainPair
from tlhelpers.domain.dann import DANN, DigitNet
from tlhelpers.domain.mmd import MultiKernelMMD
from tlhelpers.domain.paired import PairedLoader, RepeatLoader, UnlabeledDataset
from tlhelpers.domain.steps import MMDStep, dann_step, source_only_step
from tlhelpers.training.engine import History, evaluate, fit
from tlhelpers.training.schedules import inverse_decay

METHODS = ("source_only", "dann", "mmd", "oracle")


@dataclass
class DAConfig:
    """The training budget and hyper-parameters, identical for every method.

    Attributes:
        num_epochs: passes over the source training set.
        batch_size: images per domain per step (a DANN step sees twice as many).
        optimizer: ``"sgd"`` (momentum 0.9, the paper's choice) or ``"adam"`` (converges in
            fewer steps, which the short CPU runs of reduced mode need).
        lr: initial learning rate ``mu_0``, annealed by ``mu_0 / (1 + 10 p) ** 0.75`` (the DANN
            paper's schedule).
        weight_decay: weight decay.
        gamma: steepness of the ``lambda`` ramp (DANN's GRL and MMD's weight).
        mmd_weight: trade-off of the MMD loss.
        mmd_multipliers: bandwidth multipliers of the MMD's Gaussian kernels (DAN's 2^-2 .. 2^2).
        feature_dim: length of the feature vector.
        width: channels of the CNN's first convolution.
    """

    num_epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.01
    weight_decay: float = 5e-4
    gamma: float = 10.0
    mmd_weight: float = 1.0
    mmd_multipliers: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    feature_dim: int = 128
    width: int = 32

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, saved beside results."""
        return asdict(self)


@dataclass
class RunResult:
    """A trained model with its history and accuracies (target accuracy: last epoch, fixed schedule)."""

    method: str
    seed: int
    model: torch.nn.Module
    history: History
    source_acc: float
    target_acc: float


def _loader(dataset: Any, batch_size: int, seed: int, device: torch.device | str | None, shuffle: bool) -> DataLoader:
    # Training loaders (shuffled) are read every epoch and keep their workers; test loaders are read once.
    # The generator's state goes into fit's checkpoints (through PairedLoader/RepeatLoader), so a
    # resumed run shuffles as the uninterrupted one would rather than restarting from ``seed``.
    gen = torch.Generator().manual_seed(seed)
    kwargs = loader_kwargs(device, persistent=shuffle)
    return DataLoader(dataset, batch_size, shuffle=shuffle, drop_last=shuffle, generator=gen, **kwargs)


def _pair_fingerprint(pair: DomainPair) -> str:
    """One hash of the two training sets (the only data a run reads while training)."""
    return "-".join(fingerprint_dataset(ds) for ds in (pair.source_train, pair.target_train))


def train_method(
    method: str,
    pair: DomainPair,
    config: DAConfig,
    seed: int = 0,
    *,
    device: str | torch.device | None = None,
    progress: bool = True,
    checkpoint_path: str | Path | None = None,
    time_limit: float | None = None,
) -> RunResult:
    """Train one method on ``pair`` and score it on both test sets.

    Args:
        method: one of ``source_only``, ``dann``, ``mmd``, ``oracle``.
        pair: the datasets (see :func:`tlhelpers.course.domain_pairs.load_pair`).
        config: budget and hyper-parameters.
        seed: seeds the weights, the shuffles and dropout.
        device: see :func:`tlhelpers.core.runtime.get_device`.
        progress: show progress bars.
        checkpoint_path: save after every epoch and resume from here (see
            :func:`tlhelpers.core.checkpoint.run_checkpoint`), so a disconnect costs at most one epoch. The
            checkpoint records the method, seed, ``config`` and a fingerprint of the training images:
            resuming another run from it is refused (:class:`tlhelpers.core.checkpoint.CheckpointError`).
        time_limit: seconds of training wall time; training stops after the first epoch that
            ends past it and ``result.history.stopped_early`` says so (see
            :func:`tlhelpers.training.engine.fit`). None for no limit.

    Returns:
        The :class:`RunResult`; its accuracies are those of the last epoch trained.

    Raises:
        ValueError: for an unknown method.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}.")
    seed_everything(seed)
    channels, size, _ = pair.source_train.image_shape
    net = DigitNet(pair.source_train.num_classes, channels, size, config.feature_dim, config.width)
    model: torch.nn.Module = DANN(net, gamma=config.gamma) if method == "dann" else net
    bs = config.batch_size
    source = _loader(pair.source_train, bs, seed, device, shuffle=True)
    # The adapting methods get the target images only: labels cannot leak into training.
    target = _loader(UnlabeledDataset(pair.target_train), bs, seed + 1, device, shuffle=True)
    if method == "oracle":
        loader: Any = RepeatLoader(_loader(pair.target_train, bs, seed + 1, device, shuffle=True), len(source))
        step: Any = None
    else:
        loader = PairedLoader(source, target)
        step = {"source_only": source_only_step, "dann": dann_step}.get(method) or MMDStep(
            MultiKernelMMD(config.mmd_multipliers), weight=config.mmd_weight, gamma=config.gamma
        )
    if config.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay
        )
    elif config.optimizer == "adam":
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    else:
        raise ValueError(f"unknown optimizer {config.optimizer!r}; use 'sgd' or 'adam'.")
    kwargs = {"step_fn": step} if step is not None else {}
    history = fit(
        model,
        loader,
        config.num_epochs,
        optimizer=optimizer,
        scheduler=functools.partial(inverse_decay, alpha=10.0, beta=0.75),
        device=device,
        progress=progress,
        desc=method,
        checkpoint_path=checkpoint_path,
        time_limit=time_limit,
        config={"method": method, "seed": seed, **asdict(config)},
        data_fingerprint=_pair_fingerprint(pair) if checkpoint_path is not None else None,
        **kwargs,
    )
    source_acc = evaluate(model, _loader(pair.source_test, 256, 0, device, False), device=device)["acc"]
    target_acc = evaluate(model, _loader(pair.target_test, 256, 0, device, False), device=device)["acc"]
    return RunResult(method, seed, model, history, source_acc, target_acc)
