"""Source/target batches for unsupervised domain adaptation, with no way to reach target labels.

Unsupervised domain adaptation has labelled source images and *unlabelled* target images. Two
guards make that hold by construction rather than by discipline:

- :class:`UnlabeledDataset` keeps only the target images; for an
  :class:`~tlhelpers.data.tensor_dataset.ImageTensorDataset` it does not even keep a reference to
  the labels, so no code downstream can read them.
- :class:`PairedLoader` yields ``(source_x, source_y, target_x)``; if the target loader yields
  ``(x, y)`` pairs anyway, ``y`` is dropped before the batch leaves the iterator.

Example:
    >>> from torch.utils.data import DataLoader
    >>> loader = PairedLoader(DataLoader(source, 64, shuffle=True),
    ...                       DataLoader(UnlabeledDataset(target), 64, shuffle=True))
    >>> xs, ys, xt = next(iter(loader))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from tlhelpers.core.checkpoint import load_loader_state, loader_state


class UnlabeledDataset(Dataset):
    """The images of ``dataset`` without their labels: ``ds[i]`` is an image tensor.

    Args:
        dataset: a dataset whose items are images or ``(image, label, ...)`` tuples. For an
            ``ImageTensorDataset`` (anything with ``images`` and ``transform`` attributes) the
            images are read directly and the labels are never touched.

    Raises:
        ValueError: if ``dataset`` is empty.
    """

    def __init__(self, dataset: Any) -> None:
        if len(dataset) == 0:
            raise ValueError("the target dataset is empty; pass at least one image.")
        self._images: Tensor | None = getattr(dataset, "images", None)
        self._transform: Callable[[Tensor], Tensor] | None = getattr(dataset, "transform", None)
        # Keep the wrapped dataset only when we cannot read images without it.
        self._dataset = None if isinstance(self._images, Tensor) else dataset
        self._len = len(dataset)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int) -> Tensor:
        if self._dataset is None:
            image = self._images[i]  # type: ignore[index]
            return self._transform(image) if self._transform is not None else image.float().div(255)
        item = self._dataset[i]
        return item[0] if isinstance(item, (tuple, list)) else item


def _images_only(batch: Any) -> Tensor:
    # A target loader may yield (x, y) pairs; only x may pass.
    return batch[0] if isinstance(batch, (tuple, list)) else batch


class PairedLoader:
    """Zip a labelled source loader with an unlabelled target loader, one batch of each per step.

    An epoch is one pass over the source loader; the target loader restarts whenever it runs out,
    so the two datasets may differ in size. The target stream runs on across epochs, so a resumed
    run needs its position: :meth:`state_dict` and :meth:`load_state_dict` (used by
    :func:`tlhelpers.training.engine.fit`'s checkpoints) save and restore both loaders' random state and how
    far the target pass has gone, so the pairing continues exactly.

    Args:
        source_loader: yields ``(x, y)``.
        target_loader: yields ``x`` or ``(x, y)``; labels are dropped.

    Yields:
        ``(source_x, source_y, target_x)``.

    Raises:
        ValueError: if either loader is empty.
    """

    def __init__(self, source_loader: Iterable[Any], target_loader: Iterable[Any]) -> None:
        for name, loader in (("source", source_loader), ("target", target_loader)):
            if hasattr(loader, "__len__") and len(loader) == 0:  # type: ignore[arg-type]
                raise ValueError(f"the {name} loader is empty; check its dataset and batch_size.")
        self.source_loader = source_loader
        self.target_loader = target_loader
        self._target_iter: Iterator[Any] | None = None
        # Where the current target pass began (its loader's and the global random state) and how
        # many batches it has given: enough to rebuild the pass at the same position.
        self._target_start: dict[str, Any] | None = None
        self._target_taken = 0

    def __len__(self) -> int:
        return len(self.source_loader)  # type: ignore[arg-type]

    def _start_target_pass(self) -> Iterator[Any]:
        self._target_start = {"loader": loader_state(self.target_loader), "rng": torch.get_rng_state()}
        self._target_taken = 0
        self._target_iter = iter(self.target_loader)
        return self._target_iter

    def _next_target(self) -> Tensor:
        it = self._target_iter if self._target_iter is not None else self._start_target_pass()
        try:
            batch = next(it)
        except StopIteration:
            batch = next(self._start_target_pass())
        self._target_taken += 1
        return _images_only(batch)

    def state_dict(self) -> dict[str, Any]:
        """Both loaders' random state and the target pass's position (tensors and plain values).

        Returns:
            ``{"source": ..., "target": ..., "target_start": ..., "target_taken": ...}``.
        """
        return {
            "source": loader_state(self.source_loader),
            "target": loader_state(self.target_loader),
            "target_start": self._target_start,
            "target_taken": self._target_taken,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`state_dict`: the next target batch is the one the saved loader was at.

        The target pass in progress is replayed from its start (its batches are read again and
        dropped), with the global RNG set as it was then and put back afterwards.

        Args:
            state: what :meth:`state_dict` returned, from a PairedLoader built the same way.
        """
        load_loader_state(self.source_loader, state["source"])
        self._target_iter, self._target_start, self._target_taken = None, None, 0
        start = state["target_start"]
        if start is not None:
            rng = torch.get_rng_state()
            torch.set_rng_state(start["rng"].cpu())
            load_loader_state(self.target_loader, start["loader"])
            it = self._start_target_pass()
            for _ in range(int(state["target_taken"])):
                next(it)
            self._target_taken = int(state["target_taken"])
            torch.set_rng_state(rng)
        load_loader_state(self.target_loader, state["target"])

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        for batch in self.source_loader:
            yield batch[0], batch[1], self._next_target()


class RepeatLoader:
    """A loader restarted as often as needed to give exactly ``num_batches`` batches per pass.

    Gives two methods the same number of optimizer steps when their datasets differ in size (the
    oracle trains on the target set, the others pass over the source set).

    Args:
        loader: any re-iterable loader.
        num_batches: batches per pass.

    Raises:
        ValueError: if ``num_batches`` < 1.
    """

    def __init__(self, loader: Iterable[Any], num_batches: int) -> None:
        if num_batches < 1:
            raise ValueError(f"num_batches={num_batches} must be at least 1.")
        self.loader = loader
        self.num_batches = num_batches

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[Any]:
        given = 0
        while given < self.num_batches:
            empty = True
            for batch in self.loader:
                empty = False
                yield batch
                given += 1
                if given == self.num_batches:
                    return
            if empty:
                raise ValueError("the loader is empty; check its dataset and batch_size.")
