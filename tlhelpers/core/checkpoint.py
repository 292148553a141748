"""Checkpoints that survive a Colab disconnect: atomic writes, safe loads.

A checkpoint is a plain dict of tensors, numbers, strings and lists, so it loads with
``torch.load(..., weights_only=True)``: no pickled code ever runs from a downloaded or shared file.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import tempfile
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: truncated, corrupt, unsafe, or written by another run."""


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``.

    A crash or disconnect mid-write leaves the previous file intact, never a half-written one.

    Args:
        obj: anything ``torch.save`` accepts (keep it to tensors and plain containers).
        path: destination file; parent folders are created.

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def safe_load(
    path: str | Path,
    map_location: str | torch.device | None = "cpu",
    *,
    kind: str = "checkpoint",
    fix: str = "delete it to start over, or pass resume=False.",
) -> Any:
    """Load a file written by :func:`atomic_save` with ``weights_only=True``.

    Args:
        path: the file.
        map_location: where tensors are loaded.
        kind: what the file is, for messages (e.g. ``"Omniglot cache"``).
        fix: the advice that ends an error message (what the caller can do about a bad file).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        CheckpointError: if the file is truncated or not a checkpoint, or holds pickled Python objects
            (refused as unsafe: loading them could run code), with the fix in the message.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no {kind} at {path}; train first or check the path.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, zipfile errors
        if _holds_pickled_objects(path, exc):
            # newer torch names the object "GLOBAL builtins.print" or "GLOBAL print"; torch 2.2 says "Unsupported
            # class __builtin__.print" (pickle protocol 2's name of the builtins module), shown as builtins.print
            found = re.search(r"(?:GLOBAL|Unsupported class) ([\w.]+)", str(exc))
            name = re.sub(r"^__builtin__\.", "builtins.", found.group(1)) if found else ""
            what = f" ({name})" if name else ""
            raise CheckpointError(
                f"{kind} {path} was refused as unsafe (weights_only): it holds a pickled Python object{what}, "
                f"and loading one could run code; save only tensors and plain containers (a state_dict), or {fix}"
            ) from None
        raise CheckpointError(
            f"{kind} {path} is unreadable ({type(exc).__name__}: truncated or corrupt); {fix}"
        ) from None


def _holds_pickled_objects(path: Path, exc: Exception) -> bool:
    """Whether ``torch.load`` refused a well-formed file for the objects in it (not for broken bytes)."""
    if not isinstance(exc, pickle.UnpicklingError) or "weights only" not in str(exc).lower():
        return False
    if zipfile.is_zipfile(path):  # torch.save's format: the archive is whole, so the refusal is its content
        return True
    with open(path, "rb") as fh:  # the legacy format starts with a pickle (protocol 2+ opcode)
        return fh.read(1) == b"\x80"


def restore_training(
    path: str | Path,
    model: Any,
    optimizer: Any,
    scheduler: Any = None,
    scaler: Any = None,
    map_location: str | Any = "cpu",
    *,
    state: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Load a training checkpoint into ``model``, ``optimizer`` and (if given) scheduler and scaler.

    Args:
        path: the checkpoint file (named in errors).
        model: receives ``state["model"]``.
        optimizer: receives ``state["optimizer"]``.
        scheduler: receives ``state["scheduler"]`` when both exist.
        scaler: receives ``state["scaler"]`` when both exist.
        map_location: where tensors are loaded.
        state: the checkpoint already read with :func:`safe_load` (then ``path`` is not read again).

    Returns:
        The whole checkpoint dict, for the loop's own entries (epoch, history, RNG states).

    Raises:
        CheckpointError: if the file is truncated or not a checkpoint, or its weights do not fit ``model``
            or ``optimizer`` (another architecture or parameter grouping).
    """
    state = dict(safe_load(path, map_location=map_location) if state is None else state)
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {Path(path).name} does not fit this model or optimizer ({first[:150]}); "
            "pass resume=False to start over, or use another checkpoint path."
        ) from None
    for obj, key in ((scheduler, "scheduler"), (scaler, "scaler")):
        if obj is not None and state.get(key) is not None:
            obj.load_state_dict(state[key])
    return state


def run_checkpoint(name: str, root: str | Path | None = None, **config: Any) -> Path:
    """A checkpoint path for one training run, unique to its configuration.

    Pass it as ``fit(..., checkpoint_path=run_checkpoint("pets-head-only", lr=1e-3, num_epochs=5))``:
    rerunning the same cell after a disconnect resumes the run, while changing any setting (an
    exercise, a new learning rate) starts a new run instead of silently resuming the old one.

    Args:
        name: a readable run name (letters, digits, ``-`` and ``_``).
        root: the folder; default ``data_root()/checkpoints``.
        **config: every setting that defines the run (JSON-serialisable, or with a stable ``repr``).

    Returns:
        ``<root>/<name>-<10 hex digits of the config hash>.pt``.

    Raises:
        ValueError: if ``name`` has characters that do not belong in a file name.
    """
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ValueError(f"run name {name!r} must be letters, digits, '-' or '_'; e.g. 'pets-head-only'.")
    if root is None:
        from tlhelpers.core.runtime import data_root, mode_name

        root = data_root() / "checkpoints"
        config = {"mode": mode_name(), **config}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=repr).encode()).hexdigest()[:10]
    return Path(root) / f"{name}-{digest}.pt"


# Attributes searched for random state, in this order: a DataLoader's own generator, its sampler's and
# batch sampler's (and their samplers'), and the loader that a wrapper such as RepeatLoader repeats.
_LOADER_PARTS = ("generator", "sampler", "batch_sampler", "loader")


def _has_state_dict(obj: Any) -> bool:
    return callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None))


def _walk_loader(obj: Any, prefix: str = "", depth: int = 0, seen: set[int] | None = None) -> Iterator[tuple[str, Any]]:
    """``(path, part)`` for every generator or stateful part reachable from ``obj``, each object once."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Generator) or (depth > 0 and _has_state_dict(obj)):
        yield prefix or "generator", obj
        return
    if depth == 0 and _has_state_dict(obj):
        yield "state_dict", obj
        return
    if depth >= 3:
        return
    for name in _LOADER_PARTS:
        part = getattr(obj, name, None)
        if part is not None and not isinstance(part, (int, float, str, bool)):
            yield from _walk_loader(part, f"{prefix}.{name}" if prefix else name, depth + 1, seen)


def loader_state(obj: Any) -> dict[str, Any]:
    """The random state of a loader, so that a resumed run draws the same batches as an uninterrupted one.

    Handles a ``torch.Generator``; an object with ``state_dict()``/``load_state_dict()`` (e.g.
    :class:`tlhelpers.domain.paired.PairedLoader`, :class:`tlhelpers.transfer.probe.FeatureLoader`); and a
    ``DataLoader``: its ``generator``, its sampler's and batch sampler's generators when they are other
    objects, and any part of those with its own ``state_dict``. A loader that draws from the global RNG
    only has an empty state (the global RNG is saved by :func:`tlhelpers.training.engine.fit` itself).

    Args:
        obj: the loader (or generator).

    Returns:
        A dict of tensors and plain containers (it loads with ``weights_only=True``), keyed by where each
        part sits, e.g. ``{"generator": ..., "sampler.generator": ...}``.
    """
    state: dict[str, Any] = {}
    for path, part in _walk_loader(obj):
        state[path] = part.get_state() if isinstance(part, torch.Generator) else part.state_dict()
    return state


def load_loader_state(obj: Any, state: Mapping[str, Any]) -> None:
    """Restore a state from :func:`loader_state` into the same kind of loader (or generator).

    Args:
        obj: the loader, built as when the state was saved.
        state: what :func:`loader_state` returned.

    Raises:
        CheckpointError: if the state does not fit the loader (it was saved from a different loader).
    """
    parts = dict(_walk_loader(obj))
    if set(parts) != set(state):
        raise CheckpointError(
            f"the saved loader state has parts {sorted(state) or 'none'} but this loader has "
            f"{sorted(parts) or 'none'}; build the loader as in the saved run, or pass resume=False."
        )
    for path, part in parts.items():
        if isinstance(part, torch.Generator):
            part.set_state(state[path].cpu())  # a generator state is a CPU tensor, even a CUDA generator's
        else:
            part.load_state_dict(state[path])


def _hash_value(h: Any, value: Any) -> None:
    """Feed one item (tensors, arrays, images, numbers, strings and containers of them) into ``h``."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif hasattr(value, "__array__") and not isinstance(value, (str, bytes)):
        import numpy as np

        a = np.ascontiguousarray(np.asarray(value))
        h.update(f"A{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    elif hasattr(value, "tobytes") and hasattr(value, "size") and hasattr(value, "mode"):  # a PIL image
        h.update(f"I{value.mode}{value.size}".encode())
        h.update(value.tobytes())
    elif isinstance(value, (list, tuple)):
        h.update(f"L{len(value)}".encode())
        for v in value:
            _hash_value(h, v)
    elif isinstance(value, Mapping):
        h.update(f"D{len(value)}".encode())
        for k in sorted(value, key=str):
            h.update(str(k).encode())
            _hash_value(h, value[k])
    else:
        h.update(f"V{value!r}".encode())


def _spread(n: int, max_items: int | None) -> list[int]:
    """All of ``range(n)``, or ``max_items`` positions spread evenly over it (first and last included)."""
    if max_items is None or n <= max_items:
        return list(range(n))
    if max_items < 2:
        return [0][:max_items]
    return sorted({round(i * (n - 1) / (max_items - 1)) for i in range(max_items)})


def fingerprint_dataset(
    dataset: Any, *, max_items: int | None = None, mtimes: bool = False, contents: bool = False
) -> str:
    """A short hash of a dataset's content, to tell whether a checkpoint or cache was made from this data.

    What is hashed, by kind of dataset:

    - an image folder (anything with ``samples`` of ``(file path, label)``, e.g. torchvision's
      ``ImageFolder``): the class names and, per file, its path relative to ``dataset.root``, its size in
      bytes and its label; with ``mtimes`` also its modification time, with ``contents`` its bytes. So
      adding, removing, renaming or re-labelling (moving between class folders) a file changes the
      fingerprint, and so does almost any edit (sizes change); copying the folder elsewhere does not
      (unless ``mtimes``).
    - tensors (an ``ImageTensorDataset``'s ``images`` and ``labels``, a ``TensorDataset``'s ``tensors``):
      their dtypes, shapes and bytes; the class names when present. Transforms are not hashed.
    - a ``Subset``: its indices and the fingerprint of the dataset under it; a ``ConcatDataset``: its parts.
    - anything else: the items themselves (``dataset[i]``: tensors, arrays, PIL images, numbers), so its
      transform must be deterministic.

    Args:
        dataset: a map-style dataset.
        max_items: hash at most this many items (files or rows), spread evenly over the dataset, plus its
            length; None hashes everything (exact, reads all tensors or file entries).
        mtimes: for image folders, also hash each file's modification time.
        contents: for image folders, also hash each file's bytes (exact, reads every file).

    Returns:
        16 hex digits.

    Raises:
        ValueError: if ``max_items`` < 1.
    """
    if max_items is not None and max_items < 1:
        raise ValueError(f"max_items={max_items} must be at least 1, or None to hash everything.")
    h = hashlib.sha256()
    h.update(f"n{len(dataset)}".encode())
    classes = getattr(dataset, "classes", None)
    if classes is not None:
        _hash_value(h, [str(c) for c in classes])
    samples = getattr(dataset, "samples", None)
    images, labels = getattr(dataset, "images", None), getattr(dataset, "labels", None)
    if isinstance(samples, Sequence) and all(isinstance(s, (tuple, list)) and len(s) >= 2 for s in samples[:1]):
        root = Path(getattr(dataset, "root", "") or "")
        for i in _spread(len(samples), max_items):
            file, label = Path(samples[i][0]), samples[i][1]
            stat = file.stat()
            name = file.relative_to(root).as_posix() if file.is_relative_to(root) else file.as_posix()
            h.update(f"F{name}\0{stat.st_size}\0{int(label)}".encode())
            if mtimes:
                h.update(f"\0{stat.st_mtime_ns}".encode())
            if contents:
                h.update(file.read_bytes())
    elif isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor):
        rows = _spread(len(images), max_items)
        keep = torch.as_tensor(rows, dtype=torch.long) if len(rows) < len(images) else slice(None)
        _hash_value(h, [images[keep], labels[keep]])
    elif isinstance(getattr(dataset, "tensors", None), tuple):
        rows = _spread(len(dataset), max_items)
        keep = torch.as_tensor(rows, dtype=torch.long) if len(rows) < len(dataset) else slice(None)
        _hash_value(h, [t[keep] for t in dataset.tensors])
    elif hasattr(dataset, "indices") and hasattr(dataset, "dataset"):  # torch.utils.data.Subset
        _hash_value(h, [int(i) for i in dataset.indices])
        h.update(fingerprint_dataset(dataset.dataset, max_items=max_items, mtimes=mtimes, contents=contents).encode())
    elif isinstance(getattr(dataset, "datasets", None), Sequence):  # ConcatDataset
        for part in dataset.datasets:
            h.update(fingerprint_dataset(part, max_items=max_items, mtimes=mtimes, contents=contents).encode())
    else:
        for i in _spread(len(dataset), max_items):
            _hash_value(h, dataset[i])
    return h.hexdigest()[:16]


def _plain(value: Any) -> Any:
    """``value`` as JSON data (tuples become lists; objects their type name or a stable repr)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()

    def default(obj: Any) -> Any:
        if isinstance(obj, torch.Tensor):
            return obj.tolist()
        if isinstance(obj, (set, frozenset)):
            return sorted(obj, key=repr)
        text = repr(obj)
        return type(obj).__qualname__ if " at 0x" in text else text

    return json.loads(json.dumps(value, default=default))


def _name(obj: Any) -> str:
    """The qualified name of a class or function (a ``functools.partial``: its function's).

    Without its module: a class that moves to another module (a library's reorganisation, a torch
    upgrade) is still the same model or schedule, and must not orphan the checkpoints it wrote.
    """
    obj = getattr(obj, "func", obj)
    return str(getattr(obj, "__qualname__", type(obj).__qualname__))


_HYPER_PARAMETERS = ("lr", "weight_decay", "momentum", "dampening", "nesterov", "betas", "eps", "amsgrad",
                     "alpha", "centered", "rho", "lr_decay", "initial_accumulator_value", "lambd", "t0")


def run_identity(
    model: Any,
    optimizer: Any = None,
    *,
    config: Mapping[str, Any] | None = None,
    data_fingerprint: str | None = None,
    **known: Any,
) -> dict[str, Any]:
    """What defines a training run, stored in its checkpoints so that another run never resumes from them.

    Args:
        model: its class and the names and shapes of its state (a short hash) are recorded.
        optimizer: its class, the hyper-parameters of each parameter group (lr, weight_decay, betas...;
            not torch's implementation flags, which change between versions) and the number of tensors
            in each group.
        config: the caller's settings (JSON-able: numbers, strings, lists, dicts), e.g. a script's arguments;
            a loop setting of the same name is kept as ``"fit <name>"``.
        data_fingerprint: e.g. :func:`fingerprint_dataset` of the training set.
        **known: other settings the loop knows (steps per epoch, gradient clipping...).

    Returns:
        ``{"settings": {...flat JSON values...}, "data": data_fingerprint}``.
    """
    settings: dict[str, Any] = {}
    if model is not None:
        shapes = [[k, list(v.shape)] for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)]
        settings["model"] = _name(type(model))
        settings["model parameters"] = hashlib.sha256(json.dumps(shapes).encode()).hexdigest()[:12]
    if optimizer is not None:
        settings["optimizer"] = _name(type(optimizer))
        groups = optimizer.param_groups
        settings["optimizer group sizes"] = [len(g["params"]) for g in groups]
        for i, group in enumerate(groups):
            prefix = f"group {i} " if len(groups) > 1 else ""
            for key, value in group.items():
                # the hyper-parameters a person sets; not the implementation flags (foreach, fused,
                # decoupled_weight_decay...) that torch versions add, so a checkpoint survives an upgrade
                if key in _HYPER_PARAMETERS:
                    settings[f"{prefix}{key}"] = value
    settings.update(known)
    # The caller's settings first (they lead the message); one of the loop's that has the same name
    # as one of them is kept as "fit <name>".
    merged = dict(config or {})
    merged.update({f"fit {k}" if k in merged else k: v for k, v in settings.items()})
    return {"settings": _plain(merged), "data": data_fingerprint}


def _short(value: Any) -> str:
    text = "(not set)" if value is _MISSING else json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


_MISSING = object()


def identity_changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """What differs between two :func:`run_identity` results, e.g. ``["lr 0.001 -> 0.01"]``.

    Returns:
        One short phrase per changed setting (in the current run's order), then ``"data fingerprint
        changed"`` when the data differ; empty when the runs are the same.
    """
    old, new = dict(saved.get("settings", {})), dict(current.get("settings", {}))
    changes: list[str] = []
    for key in [*new, *(k for k in old if k not in new)]:
        a, b = old.get(key, _MISSING), new.get(key, _MISSING)
        if a == b:
            continue
        if key == "model parameters" and a is not _MISSING and b is not _MISSING:
            changes.append("model parameter names/shapes changed")
        else:
            changes.append(f"{key} {_short(a)} -> {_short(b)}")
    if saved.get("data") != current.get("data"):
        before, after = saved.get("data"), current.get("data")
        changes.append("data fingerprint changed" if before and after else f"data fingerprint {before} -> {after}")
    return changes


def check_identity(path: str | Path, saved: Mapping[str, Any] | None, current: Mapping[str, Any]) -> None:
    """Refuse to resume from a checkpoint that another run wrote.

    Checkpoints written before runs had an identity (``saved`` is None) are accepted with a warning:
    they come from a fixed path of the same code, and refusing them would end every run in progress.

    Args:
        path: the checkpoint, named in the message.
        saved: the identity stored in it (``state.get("identity")``).
        current: this run's :func:`run_identity`.

    Raises:
        CheckpointError: naming each change, e.g. "checkpoint run.pt was written by another run:
            lr 0.001 -> 0.01, data fingerprint changed; pass resume=False to start over, or use another
            checkpoint path."
    """
    name = Path(path).name
    if saved is None:
        warnings.warn(
            f"checkpoint {name} records no run settings (an older tlhelpers wrote it), so it is resumed "
            "unchecked; pass resume=False if it belongs to another run.",
            stacklevel=3,
        )
        return
    changes = identity_changes(saved, current)
    if changes:
        raise CheckpointError(
            f"checkpoint {name} was written by another run: {', '.join(changes)}; "
            "pass resume=False to start over, or use another checkpoint path."
        )
