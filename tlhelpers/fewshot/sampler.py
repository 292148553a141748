"""Episodic N-way K-shot sampling over a labelled image tensor (``EpisodeSampler``, ``Episode``).

An episode draws ``n_way`` classes without replacement, then ``k_shot + n_query`` distinct images
of each; the first ``k_shot`` form the support set and the rest the query set, and the classes
are relabelled ``0..n_way-1``. Images stay a uint8 tensor in memory and the class -> indices table
is built once, so drawing an episode is a few tensor indexing operations.

Example:
    >>> from tlhelpers.fewshot.sampler import EpisodeSampler
    >>> sampler = EpisodeSampler(dataset, n_way=5, k_shot=1, n_query=15)
    >>> episode = sampler.sample(seed=0)
    >>> episode.support_x.shape, episode.query_y[:5]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Episode:
    """One few-shot task, or a stack of tasks along a leading dimension ``T``.

    Support items are ordered class by class (``k_shot`` of class 0, then of class 1, ...), and so
    are queries.

    Shape:
        support_x: ``(N*K, C, H, W)`` float in [0, 1] (``(T, N*K, C, H, W)`` when stacked);
        support_y: ``(N*K,)`` int64 in ``0..N-1``; query_x: ``(N*Q, C, H, W)``; query_y: ``(N*Q,)``;
        classes: ``(N,)`` the original class ids, so ``classes[y]`` is the dataset label.
    """

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor
    classes: Tensor

    @property
    def n_way(self) -> int:
        """Number of classes in the task."""
        return int(self.classes.shape[-1])

    def task(self, t: int) -> Episode:
        """Task ``t`` of a stacked meta-batch, as a single episode."""
        return Episode(*(getattr(self, f)[t] for f in _FIELDS))

    @property
    def num_tasks(self) -> int:
        """Tasks in a stacked meta-batch (1 for a single episode)."""
        return int(self.support_y.shape[0]) if self.support_y.ndim == 2 else 1

    def to(self, device: torch.device | str) -> Episode:
        """Return the episode with every tensor on ``device``."""
        return Episode(*(getattr(self, f).to(device, non_blocking=True) for f in _FIELDS))


_FIELDS = ("support_x", "support_y", "query_x", "query_y", "classes")


def stack_episodes(episodes: Sequence[Episode]) -> Episode:
    """Stack same-sized episodes into one meta-batch with a leading task dimension ``T``.

    Raises:
        ValueError: if ``episodes`` is empty or the episodes differ in size.
    """
    if not episodes:
        raise ValueError("no episodes to stack; pass at least one Episode.")
    try:
        return Episode(*(torch.stack([getattr(e, f) for e in episodes]) for f in _FIELDS))
    except RuntimeError:
        raise ValueError("episodes differ in size; stack only episodes of the same n_way, k_shot and n_query.") from None


class EpisodeSampler:
    """Draw N-way K-shot episodes with Q queries per class from images held in memory.

    Args:
        images: uint8 images, or any object with ``.images`` and ``.labels`` tensors (an
            ``ImageTensorDataset``); then ``labels`` must be None.
        labels: int64 class of each image.
        n_way: classes per episode.
        k_shot: support images per class.
        n_query: query images per class.
        device: where episodes are built; keep the images on the GPU to sample there.
        seed: seed of the sampler's own random stream (``generator``), which draws every episode
            not given a ``seed`` or ``generator``; its state is saved and restored with
            :meth:`state_dict` and :meth:`load_state_dict`, so a resumed run draws the same episodes.

    Shape:
        images: ``(M, C, H, W)``; labels: ``(M,)``.

    Raises:
        ValueError: if ``n_way`` exceeds the classes that have ``k_shot + n_query`` images, or a
            size is not positive.
    """

    def __init__(
        self,
        images: Tensor | object,
        labels: Tensor | None = None,
        *,
        n_way: int,
        k_shot: int,
        n_query: int,
        device: torch.device | str | None = None,
        seed: int = 0,
    ) -> None:
        if labels is None:
            if not hasattr(images, "images") or not hasattr(images, "labels"):
                raise ValueError("pass images and labels tensors, or a dataset with .images and .labels.")
            images, labels = images.images, images.labels  # type: ignore[union-attr]
        if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError("images must be a uint8 tensor (M, C, H, W); build one with tlhelpers.data.tensor_cache.")
        if labels.shape != (len(images),):
            raise ValueError(f"{len(images)} images but labels of shape {tuple(labels.shape)}; pass one label per image.")
        for name, value, low in (("n_way", n_way, 2), ("k_shot", k_shot, 1), ("n_query", n_query, 1)):
            if value < low:
                raise ValueError(f"{name}={value} must be at least {low}.")
        self.images = images if device is None else images.to(device)
        self.n_way, self.k_shot, self.n_query = n_way, k_shot, n_query
        labels = labels.long().cpu()
        order = torch.argsort(labels, stable=True)
        class_ids, counts = torch.unique_consecutive(labels[order], return_counts=True)
        per_class = dict(zip(class_ids.tolist(), torch.split(order, counts.tolist())))
        need = k_shot + n_query
        usable = {c: idx for c, idx in per_class.items() if len(idx) >= need}
        if len(usable) < n_way:
            smallest = int(counts.min()) if len(counts) else 0
            raise ValueError(
                f"n_way={n_way} but only {len(usable)} of {len(per_class)} classes have k_shot+n_query={need} "
                f"images (the smallest class has {smallest}); lower n_way, k_shot or n_query."
            )
        self.class_ids = torch.tensor(sorted(usable))
        self._indices = [usable[int(c)] for c in self.class_ids]
        self._equal = len({len(i) for i in self._indices}) == 1
        self._table = torch.stack(self._indices) if self._equal else None
        self.generator = torch.Generator().manual_seed(seed)

    def manual_seed(self, seed: int) -> EpisodeSampler:
        """Restart the sampler's own random stream from ``seed``; returns the sampler."""
        self.generator.manual_seed(seed)
        return self

    def state_dict(self) -> dict[str, Tensor]:
        """The state of the sampler's random stream, for a checkpoint (``{"generator": uint8 tensor}``)."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore the random stream saved by :meth:`state_dict`: the next episodes are those that followed it."""
        self.generator.set_state(state["generator"])

    @property
    def num_classes(self) -> int:
        """Classes an episode can draw from."""
        return len(self.class_ids)

    def sample(self, seed: int | None = None, generator: torch.Generator | None = None) -> Episode:
        """Draw one episode.

        Args:
            seed: a seed for this episode alone (reproducible evaluation episodes).
            generator: a running generator; ignored when ``seed`` is given. With neither, the
                sampler's own ``generator`` draws the episode.

        Returns:
            The episode, with images as float in [0, 1] on the sampler's device.
        """
        gen = torch.Generator().manual_seed(seed) if seed is not None else generator if generator is not None else self.generator
        n, need = self.n_way, self.k_shot + self.n_query
        chosen = torch.randperm(self.num_classes, generator=gen)[:n]
        if self._table is not None:  # every class has the same count: one vectorised draw
            rows = self._table[chosen]
            picks = torch.rand(rows.shape, generator=gen).argsort(dim=1)[:, :need]
            idx = rows.gather(1, picks)
        else:
            idx = torch.stack([
                self._indices[c][torch.randperm(len(self._indices[c]), generator=gen)[:need]] for c in chosen.tolist()
            ])
        support, query = idx[:, : self.k_shot].reshape(-1), idx[:, self.k_shot :].reshape(-1)
        dev = self.images.device
        labels = torch.arange(n)
        return Episode(
            support_x=self.images[support.to(dev)].float().div_(255),
            support_y=labels.repeat_interleave(self.k_shot).to(dev),
            query_x=self.images[query.to(dev)].float().div_(255),
            query_y=labels.repeat_interleave(self.n_query).to(dev),
            classes=self.class_ids[chosen].to(dev),
        )

    def sample_batch(self, num_tasks: int, generator: torch.Generator | None = None) -> Episode:
        """Draw ``num_tasks`` episodes stacked into a meta-batch (leading dimension ``T``).

        ``generator`` defaults to the sampler's own stream (see :meth:`sample`).
        """
        gen = generator if generator is not None else self.generator
        return stack_episodes([self.sample(generator=gen) for _ in range(num_tasks)])

    def episodes(self, num_episodes: int, seed: int = 0) -> Iterator[Episode]:
        """Yield ``num_episodes`` reproducible episodes: episode ``i`` depends only on ``(seed, i)``."""
        for i in range(num_episodes):
            yield self.sample(seed=seed * 1_000_003 + i)

    def __repr__(self) -> str:
        return (
            f"EpisodeSampler({self.n_way}-way {self.k_shot}-shot, {self.n_query} queries; "
            f"{self.num_classes} classes, {len(self.images)} images)"
        )
