"""Where the course runs: mode, data folder, device, seeds, mixed precision, loader defaults.

Everything here is read when called, never at import, so setting ``TLH_REDUCED`` or ``TLH_DATA``
inside a notebook before the first call takes effect.

Example:
    >>> from tlhelpers.runtime import get_device, is_reduced, seed_everything
    >>> seed_everything(0)
    >>> device = get_device()
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_DEVICES = ("cuda", "mps", "cpu")


def _flag(name: str, meaning: str) -> bool:
    raw = os.environ.get(name, "0").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"{name}={raw!r} is not a switch value; set {name}=1 or {name}=0 ({meaning}).")


def is_reduced() -> bool:
    """Return True when the course runs in reduced mode (``TLH_REDUCED=1``).

    Reduced mode uses offline data generated in-process, small sizes and the CPU; full mode uses
    real datasets, ImageNet weights and a GPU.

    Raises:
        ValueError: if ``TLH_REDUCED`` holds something other than 0/1/true/false/yes/no/on/off.
    """
    return _flag("TLH_REDUCED", "1 = reduced mode, 0 = full mode")


def is_smoke() -> bool:
    """Return True for a smoke run (``TLH_SMOKE=1``): the same code path, with tiny counts.

    CI sets it to run every notebook's full-mode path on tiny files in the real on-disk layouts:
    epochs, iterations, episodes and images shrink (see :func:`count`), nothing else changes.

    Raises:
        ValueError: if ``TLH_SMOKE`` holds something other than 0/1/true/false/yes/no/on/off.
    """
    return _flag("TLH_SMOKE", "1 = smoke run with tiny counts")


def count(value: int | None, smoke: int) -> int | None:
    """A count of the configuration (epochs, iterations, episodes, images): ``value``, or ``smoke``
    in a smoke run (``TLH_SMOKE=1``).

    Example:
        >>> num_epochs = count(20, smoke=1)  # 20 epochs; 1 when CI smoke-tests this path
    """
    return smoke if is_smoke() else value


def claim(holds: bool, statement: str) -> None:
    """Check a claim a chapter makes about its results, like ``assert holds, statement``.

    A smoke run (``TLH_SMOKE=1``) trains for a step or two on a handful of generated images, where
    no lesson can show: there the claim is printed, marked as not checked, and the run goes on.
    Invariants that hold on any data (a frozen weight stays unchanged) are checked with a plain ``assert``.

    Raises:
        AssertionError: with ``statement`` when the claim does not hold (outside smoke runs).
    """
    if is_smoke():
        print(f"[smoke run, not checked: {'holds' if holds else 'does not hold'}] {statement}")
        return
    if not holds:
        raise AssertionError(statement)


def mode_name() -> str:
    """Return ``"reduced"`` or ``"full"``, the mode's name as printed in banners and results."""
    return "reduced" if is_reduced() else "full"


def data_root(create: bool = True) -> Path:
    """Return the folder for downloads and caches: ``TLH_DATA`` or ``data/`` of the repository.

    Without ``TLH_DATA`` the default is the ``data/`` folder beside ``notebooks/`` when run from a
    checkout, else ``./data`` of the current directory.

    Args:
        create: make the folder if it does not exist and check that it is writable.

    Raises:
        PermissionError: if the folder cannot be created or written, naming ``TLH_DATA`` as the fix.
    """
    env = os.environ.get("TLH_DATA")
    if env:
        root = Path(env).expanduser()
    else:
        here = Path.cwd()
        repo = next((p for p in (here, *here.parents) if (p / "tlhelpers").is_dir() and (p / "notebooks").is_dir()), None)
        root = (repo or here) / "data"
    if create:
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe = root / ".write_test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise PermissionError(
                f"data root {root} is not writable ({exc.strerror}); point TLH_DATA at a writable folder."
            ) from None
    return root


def get_device(device: str | torch.device | None = None) -> torch.device:
    """Pick the device: an explicit choice, else ``TLH_DEVICE``, else cuda, then mps, then cpu.

    Args:
        device: ``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"cpu"`` or a ``torch.device``; None to choose.

    Raises:
        ValueError: for an unknown device name, or one this machine does not have.
    """
    choice = device if device is not None else os.environ.get("TLH_DEVICE") or None
    if choice is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(choice)
    except RuntimeError:
        raise ValueError(f"unknown device {choice!r}; use one of {', '.join(_DEVICES)}.") from None
    if dev.type not in _DEVICES:
        raise ValueError(f"unknown device {choice!r}; use one of {', '.join(_DEVICES)}.")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for but no CUDA GPU is visible; use 'cpu' or leave device=None.")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' asked for but MPS is not available; use 'cpu' or leave device=None.")
    return dev


def seed_everything(seed: int, deterministic: bool = False) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a ``torch.Generator`` seeded the same.

    Args:
        seed: the seed.
        deterministic: also ask cuDNN and torch for deterministic kernels (slower on GPU).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


def amp_dtype(device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for ``device``: bf16 on CUDA GPUs that support it, fp16 on older ones, None on CPU/MPS."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@contextlib.contextmanager
def autocast(device: torch.device | str, enabled: bool = True) -> Iterator[None]:
    """Mixed precision on CUDA (bf16, else fp16); a no-op on CPU and MPS or when ``enabled`` is False."""
    dtype = amp_dtype(device) if enabled else None
    if dtype is None:
        yield
        return
    with torch.autocast(device_type="cuda", dtype=dtype):
        yield


def make_grad_scaler(device: torch.device | str, enabled: bool = True) -> Any:
    """A gradient scaler when training runs in fp16 on CUDA; None otherwise (bf16 and fp32 need none)."""
    if not enabled or amp_dtype(device) is not torch.float16:
        return None
    if hasattr(torch.amp, "GradScaler"):  # torch >= 2.3
        return torch.amp.GradScaler("cuda")
    return torch.cuda.amp.GradScaler()


def loader_kwargs(device: torch.device | str | None = None, num_workers: int | None = None) -> dict[str, Any]:
    """DataLoader keyword defaults that suit Colab's 2 CPUs and a laptop alike.

    Workers: ``min(2, cpu count)`` in full mode, 0 in reduced mode (in-memory tensors need none).
    ``pin_memory`` only with CUDA; ``persistent_workers`` whenever workers are used.
    """
    dev = get_device(device)
    if num_workers is None:
        num_workers = 0 if is_reduced() else min(2, os.cpu_count() or 1)
    kwargs: dict[str, Any] = {"num_workers": num_workers, "pin_memory": dev.type == "cuda"}
    if num_workers > 0:
        kwargs["persistent_workers"] = True
    return kwargs


def describe() -> dict[str, str]:
    """Versions, device and mode, for the setup-check cell of each notebook."""
    import torchvision

    dev = get_device()
    info = {
        "mode": mode_name(),
        "device": str(dev),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": ".".join(map(str, __import__("sys").version_info[:3])),
        "data root": str(data_root(create=False)),
    }
    if is_smoke():
        info["mode"] += " (smoke run: tiny counts, lesson claims not checked)"
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    return info
