"""Where the course runs: mode, data folder, device, CPU threads, seeds, mixed precision, loader defaults.

Everything here is read when called, never at import, so setting ``TLH_REDUCED`` or ``TLH_DATA``
inside a notebook before the first call takes effect.

Example:
    >>> from tlhelpers.core.runtime import get_device, is_reduced, seed_everything
    >>> seed_everything(0)
    >>> device = get_device()
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_DEVICES = ("cuda", "mps", "cpu")


def _flag(name: str, meaning: str, default: str = "0") -> bool:
    raw = os.environ.get(name, default).strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"{name}={raw!r} is not a switch value; set {name}=1 or {name}=0 ({meaning}).")


#: The three budgets, smallest first: one code path, three sets of sizes.
BUDGETS: tuple[str, ...] = ("reduced", "laptop", "full")
_BUDGET_HELP = "TLH_BUDGET=reduced, laptop or full (or auto)"


@dataclass(frozen=True)
class BudgetChoice:
    """The budget the course runs at, and why.

    Attributes:
        name: ``"reduced"`` (offline data generated in-process, CPU, seconds), ``"laptop"`` (real
            data and real pretrained weights at CPU sizes, minutes) or ``"full"`` (real data at GPU sizes).
        reason: what decided it, e.g. ``"auto: no GPU; the download server answers"``.
    """

    name: str
    reason: str


@functools.lru_cache(maxsize=1)
def network_reachable(timeout: float = 3.0) -> bool:
    """True when the server of torchvision's ImageNet weights answers (asked once per process).

    Asked with one ``HEAD`` request to the address of ResNet-50's weights (read from torchvision, so no
    address is written here), through the proxies the environment names. Any failure counts as offline.
    The answer is kept for the rest of the process, so the budget cannot change between two cells.
    """
    import urllib.request

    try:
        from torchvision.models import ResNet50_Weights

        request = urllib.request.Request(ResNet50_Weights.DEFAULT.url, method="HEAD")
        with urllib.request.urlopen(request, timeout=timeout):
            return True
    except Exception:  # noqa: BLE001 - any failure (DNS, refused, timeout, HTTP error) means offline
        return False


def course_files_present() -> bool:
    """True when every dataset file of at least one chapter's real data is on disk (see ``data/catalog``).

    A classroom bundle copied into ``TLH_DATA`` makes this true with no network.
    """
    from tlhelpers.data.catalog import CHAPTERS, missing_files

    root = data_root(create=False)
    return any(ch.datasets and not missing_files(ch.datasets, (), data_root=root) for ch in CHAPTERS.values())


def select_budget() -> BudgetChoice:
    """Choose the budget from the settings, else from what this machine has.

    In order:

    1. ``TLH_BUDGET`` = ``reduced``, ``laptop`` or ``full`` (``auto`` or unset: go on);
    2. the older switch ``TLH_REDUCED``: 1 = reduced, 0 = full;
    3. automatic: a CUDA GPU -> ``full``; no GPU, but the download server answers
       (:func:`network_reachable`) or a chapter's data files are present (:func:`course_files_present`)
       -> ``laptop``: real data and real weights at sizes a CPU trains in minutes; neither -> ``reduced``.

    Raises:
        ValueError: for a ``TLH_BUDGET`` or ``TLH_REDUCED`` value that is not one of the above.

    Example:
        >>> select_budget()  # on a laptop with Wi-Fi and no NVIDIA GPU
        BudgetChoice(name='laptop', reason='auto: no CUDA GPU; the download server answers')
    """
    raw = os.environ.get("TLH_BUDGET", "").strip().lower()
    if raw and raw != "auto":
        if raw not in BUDGETS:
            raise ValueError(f"TLH_BUDGET={raw!r} is not a budget; set {_BUDGET_HELP}.")
        return BudgetChoice(raw, "set by TLH_BUDGET")
    if os.environ.get("TLH_REDUCED", "").strip():
        reduced = _flag("TLH_REDUCED", "1 = reduced mode, 0 = full mode; or use " + _BUDGET_HELP)
        return BudgetChoice("reduced" if reduced else "full", "set by TLH_REDUCED")
    if torch.cuda.is_available():
        return BudgetChoice("full", "auto: a CUDA GPU")
    if network_reachable():
        return BudgetChoice("laptop", "auto: no CUDA GPU; the download server answers")
    if course_files_present():
        return BudgetChoice("laptop", "auto: no CUDA GPU, offline; the data files are present")
    return BudgetChoice("reduced", "auto: no CUDA GPU, offline, no data files")


def budget() -> str:
    """The budget's name, ``"reduced"``, ``"laptop"`` or ``"full"`` (see :func:`select_budget`)."""
    return select_budget().name


def is_reduced() -> bool:
    """Return True when the course runs at the reduced budget (``TLH_BUDGET=reduced`` or ``TLH_REDUCED=1``).

    Reduced mode uses offline data generated in-process, small sizes and the CPU; the laptop and full
    budgets use real datasets and ImageNet weights (see :func:`select_budget`).

    Raises:
        ValueError: for a ``TLH_BUDGET`` or ``TLH_REDUCED`` value that means nothing.
    """
    return budget() == "reduced"


def is_smoke() -> bool:
    """Return True for a smoke run (``TLH_SMOKE=1``): the same code path, with tiny counts.

    CI sets it to run every notebook's full-mode path on tiny files in the real on-disk layouts:
    epochs, iterations, episodes and images shrink (see :func:`count`), nothing else changes.

    Raises:
        ValueError: if ``TLH_SMOKE`` holds something other than 0/1/true/false/yes/no/on/off.
    """
    return _flag("TLH_SMOKE", "1 = smoke run with tiny counts")


_SAME = object()


def count(value: Any, smoke: Any = _SAME, laptop: Any = None) -> Any:
    """A size of the real-data configuration (epochs, iterations, images, pixels) for the current budget.

    Returns ``smoke`` in a smoke run (``TLH_SMOKE=1``) when it is given, else ``laptop`` at the laptop
    budget when it is given, else ``value`` (the full, GPU-sized one).

    Example:
        >>> num_epochs = count(20, smoke=1, laptop=3)  # 20 on a GPU, 3 on a laptop CPU, 1 in CI's smoke run
    """
    if smoke is not _SAME and is_smoke():
        return smoke
    if laptop is not None and budget() == "laptop":
        return laptop
    return value


def claim(holds: bool, statement: str) -> None:
    """Check a claim a chapter makes about its results, like ``assert holds, statement``.

    A smoke run (``TLH_SMOKE=1``) trains for a step or two on a handful of generated images, where
    no lesson can show: there the claim is printed, marked as not checked, and the run goes on. So it
    is with ``TLH_CLAIMS=0``, which the laptop timing run sets: it times the real sizes with random
    weights on stand-in files, where the lessons cannot show either.
    Invariants that hold on any data (a frozen weight stays unchanged) are checked with a plain ``assert``.

    Raises:
        AssertionError: with ``statement`` when the claim does not hold (outside smoke runs).
    """
    if is_smoke() or not _flag("TLH_CLAIMS", "1 = check the chapters' claims, 0 = only print them", default="1"):
        why = "smoke run" if is_smoke() else "TLH_CLAIMS=0"
        print(f"[{why}, not checked: {'holds' if holds else 'does not hold'}] {statement}")
        return
    if not holds:
        raise AssertionError(statement)


def mode_name() -> str:
    """Return the budget's name (``"reduced"``, ``"laptop"`` or ``"full"``), as printed in banners and results."""
    return budget()


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


def cpu_quota(cgroup: str | Path = "/sys/fs/cgroup") -> int:
    """The CPUs this process may really use: its affinity, capped by a cgroup CPU limit.

    ``os.cpu_count()`` counts the machine's CPUs; a container or a JupyterHub server often gets
    fewer, through the CPU affinity (``taskset``, cpusets) or a cgroup quota (``cpu.max`` of cgroup
    v2, ``cpu/cpu.cfs_quota_us`` of v1; a quota of 1.5 CPUs counts as 2).

    Args:
        cgroup: where the cgroup file system is mounted.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        cpus = os.cpu_count() or 1
    root = Path(cgroup)
    limit = None
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            limit = int(quota) / int(period)
    except (OSError, ValueError):
        try:
            quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
            if quota_us > 0:
                limit = quota_us / int((root / "cpu" / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            pass
    if limit is not None:
        cpus = min(cpus, max(1, math.ceil(limit)))
    return max(1, cpus)


def busy_cpus(seconds: float = 0.25, stat: str | Path = "/proc/stat") -> float:
    """How many of this process's CPUs other programs keep busy right now, measured over ``seconds``.

    Reads the kernel's per-CPU counters twice (Linux ``/proc/stat``) while this process sleeps, so
    whatever runs counts as someone else's: ``1.0`` means one CPU's worth of work by other programs.
    Returns 0.0 where the counters do not exist (macOS, Windows).

    Args:
        seconds: length of the sample.
        stat: the counters file (a parameter for tests).
    """
    import time

    try:
        mine = {f"cpu{i}" for i in os.sched_getaffinity(0)}
    except (AttributeError, OSError):
        mine = None

    def snapshot() -> dict[str, tuple[int, int]]:
        out = {}
        for line in Path(stat).read_text().splitlines():
            name, *fields = line.split()
            if name.startswith("cpu") and name != "cpu" and (mine is None or name in mine):
                ticks = [int(f) for f in fields]
                out[name] = (sum(ticks), ticks[3] + (ticks[4] if len(ticks) > 4 else 0))  # total, idle + iowait
        return out

    try:
        before = snapshot()
        time.sleep(seconds)
        after = snapshot()
    except (OSError, ValueError, IndexError):
        return 0.0
    busy = 0.0
    for name, (total, idle) in after.items():
        if name in before:
            d_total, d_idle = total - before[name][0], idle - before[name][1]
            busy += (d_total - d_idle) / d_total if d_total > 0 else 0.0
    return busy


def configure_threads(policy: str | int = "auto") -> int:
    """Set torch's intra-op CPU threads so that training stays fast when the CPU is shared; return them.

    PyTorch's default uses a thread per CPU, and its OpenMP threads spin at every barrier, waiting
    for the slowest thread. When another program keeps one CPU busy, one of those threads keeps
    losing its CPU and every operation waits for it: on a 2-CPU machine next to one busy process, a
    Conv-4 training step ran 3-5x slower with 2 threads and about as fast as alone with 1 (see
    ``benchmarks/shared_cpu.py``). ``"auto"`` therefore measures, when it is called, how many CPUs
    other programs keep busy (:func:`busy_cpus`) and leaves those to them: all the CPUs this process
    may use (:func:`cpu_quota`) on an idle machine, one fewer next to one busy program, at least 1.
    Call it again (``describe()`` does) when the machine's load has changed.

    A choice the user made wins over ``policy``: ``TLH_THREADS`` (a number, or ``torch`` for
    PyTorch's default), else ``OMP_NUM_THREADS`` (read by PyTorch itself; left as it is).

    Args:
        policy: ``"auto"``; ``"torch"`` to keep PyTorch's default; or a number of threads.

    Returns:
        The intra-op threads torch now uses (at least 1). Under the same load, calling it again
        gives the same answer.

    Raises:
        ValueError: for a policy or ``TLH_THREADS`` that is neither ``auto``, ``torch`` nor a
            positive whole number.

    Example:
        >>> threads = configure_threads()  # 2 on an idle 2-CPU laptop, 1 while another program computes
    """
    env = os.environ.get("TLH_THREADS", "").strip().lower()
    if env:
        choice: str | int = env
        source = "TLH_THREADS"
    elif os.environ.get("OMP_NUM_THREADS", "").strip():
        return torch.get_num_threads()
    else:
        choice, source = policy, "policy"
    if isinstance(choice, str) and choice.isdigit():
        choice = int(choice)
    if choice == "torch":
        return torch.get_num_threads()
    if choice == "auto":
        quota = cpu_quota()
        threads = max(1, quota - int(busy_cpus() + 0.5)) if quota > 1 else 1
    elif isinstance(choice, int) and not isinstance(choice, bool) and choice >= 1:
        threads = choice
    else:
        raise ValueError(f"{source}={choice!r} is not a thread policy; use 'auto', 'torch' or a whole number >= 1.")
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


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


def loader_kwargs(
    device: torch.device | str | None = None, num_workers: int | None = None, *, persistent: bool = True
) -> dict[str, Any]:
    """DataLoader keyword defaults that suit Colab's 2 CPUs and a laptop alike.

    Workers: ``min(2, cpu count)`` at the full budget; 0 at the reduced and laptop budgets, whose
    in-memory tensors need none and whose CPU is better spent on the model.
    ``pin_memory`` only with CUDA. ``persistent_workers`` whenever workers are used and
    ``persistent`` is true: right for a loader read every epoch; pass ``persistent=False`` for one
    read once (a final test pass), whose workers then end with the pass instead of with the loader.
    """
    dev = get_device(device)
    if num_workers is None:
        num_workers = min(2, os.cpu_count() or 1) if budget() == "full" else 0
    kwargs: dict[str, Any] = {"num_workers": num_workers, "pin_memory": dev.type == "cuda"}
    if num_workers > 0 and persistent:
        kwargs["persistent_workers"] = True
    return kwargs


def describe() -> dict[str, str]:
    """Versions, device, mode and CPU threads, for the setup-check cell of each notebook.

    It also sets torch's CPU threads with :func:`configure_threads` (the notebooks call it first),
    so that training stays fast on a shared CPU; the ``"threads"`` line says what was chosen.
    """
    import torchvision

    dev = get_device()
    threads = configure_threads()
    choice = select_budget()
    info = {
        "budget": f"{choice.name} ({choice.reason}; {_BUDGET_HELP} to change)",
        "device": str(dev),
        "threads": f"{threads} of {cpu_quota()} CPU(s) for torch ({_threads_reason()})",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": ".".join(map(str, __import__("sys").version_info[:3])),
        "data root": str(data_root(create=False)),
    }
    if is_smoke():
        info["budget"] += " (smoke run: tiny counts, lesson claims not checked)"
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    return info


def _threads_reason() -> str:
    if os.environ.get("TLH_THREADS", "").strip():
        return "set by TLH_THREADS"
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return "set by OMP_NUM_THREADS"
    if cpu_quota() == 1:
        return "the only CPU; TLH_THREADS=n to change"
    if torch.get_num_threads() < cpu_quota():
        return "CPUs busy with other programs are left to them; TLH_THREADS=n to change"
    return "the machine is idle now; rerun this cell if other programs start, or TLH_THREADS=n"


def _main(argv: list[str] | None = None) -> int:
    """``python -m tlhelpers.core.runtime``: print the budget this machine runs at and why (``make lab`` asks it)."""
    import sys

    del argv
    try:
        choice = select_budget()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{choice.name} - {choice.reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
