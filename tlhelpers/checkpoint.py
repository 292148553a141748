"""Checkpoints that survive a Colab disconnect: atomic writes, safe loads.

A checkpoint is a plain dict of tensors, numbers, strings and lists, so it loads with
``torch.load(..., weights_only=True)``: no pickled code ever runs from a downloaded or shared file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read (truncated, corrupt, or not a checkpoint)."""


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


def safe_load(path: str | Path, map_location: str | torch.device | None = "cpu") -> Any:
    """Load a file written by :func:`atomic_save` with ``weights_only=True``.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        CheckpointError: if the file is truncated or not a checkpoint, with the fix in the message.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; train first or check the path.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, zipfile errors
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(exc).__name__}: truncated or corrupt); "
            "delete it to start over, or pass resume=False."
        ) from None


def restore_training(
    path: str | Path,
    model: Any,
    optimizer: Any,
    scheduler: Any = None,
    scaler: Any = None,
    map_location: str | Any = "cpu",
) -> dict[str, Any]:
    """Load a training checkpoint into ``model``, ``optimizer`` and (if given) scheduler and scaler.

    Returns:
        The whole checkpoint dict, for the loop's own entries (epoch, history, RNG states).

    Raises:
        CheckpointError: if the file is truncated or not a checkpoint.
    """
    state = safe_load(path, map_location=map_location)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
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
        from tlhelpers.runtime import data_root, mode_name

        root = data_root() / "checkpoints"
        config = {"mode": mode_name(), **config}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=repr).encode()).hexdigest()[:10]
    return Path(root) / f"{name}-{digest}.pt"
