"""What every benchmark script shares with ``tools/run_benchmarks.py``: arguments, skips and budgets.

- **Arguments**: ``--data-root`` (the folder with the datasets, torchvision's layouts),
  ``--max-minutes`` (the time budget), ``--results-dir`` and ``--out`` (where the JSON goes).
- **Skips**: a benchmark whose dataset or weights files are missing (and cannot be downloaded)
  prints one line ``skipped: <reason>`` and exits with :data:`SKIPPED`; the runner reports it as
  skipped, not failed, keeps its previous JSON and runs the others.
- **Threads**: :func:`run_or_skip` first sets torch's CPU threads with
  ``tlhelpers.core.runtime.configure_threads()``, as every notebook does through ``describe()``, so a
  benchmark trains with the threads a student gets (``OMP_NUM_THREADS`` or ``TLH_THREADS`` still
  win; a benchmark that times a fixed thread count sets its own after this).
- **Budgets**: :class:`Budget` splits ``--max-minutes`` among a benchmark's training runs; each run
  stops cleanly after the epoch (or iteration) that passes its share, and the JSON records how far
  it got with :meth:`Budget.record`.

Example:
    >>> budget = Budget(args.max_minutes)
    >>> limit = budget.share(runs_left=4)           # seconds for the next run, or None
    >>> history = fit(..., time_limit=limit)
    >>> run["budget"] = budget.record(history, limit)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tlhelpers.core.runtime import configure_threads
from tlhelpers.data.torchvision_sets import DatasetUnavailableError
from tlhelpers.models.backbones import WeightsUnavailableError
from tlhelpers.training.engine import History

#: Exit status of a benchmark that skipped itself because its files are missing.
SKIPPED = 3
#: Where the JSON results go unless ``--results-dir`` or ``--out`` says otherwise.
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def add_run_arguments(parser: argparse.ArgumentParser, data_help: str | None = None) -> None:
    """Add ``--data-root``, ``--max-minutes``, ``--results-dir`` and ``--out`` to ``parser``.

    Args:
        parser: the benchmark's parser.
        data_help: help text of ``--data-root``; None for a benchmark that reads no dataset (the
            option is then not added).
    """
    if data_help is not None:
        parser.add_argument("--data-root", default=None, help=data_help)
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="time budget: training stops cleanly once it is spent (split among the runs)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="folder of the JSON results")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: <results-dir>/<benchmark>_<mode>.json)")


def output_path(args: argparse.Namespace, name: str) -> Path:
    """Where to write the JSON: ``--out``, else ``--results-dir``/``name``; its folder is created."""
    out = Path(args.out) if args.out is not None else Path(args.results_dir) / name
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def run_or_skip(main: Callable[[], Any]) -> int:
    """Run ``main`` with the course's CPU threads; on missing files print ``skipped: <reason>``, return :data:`SKIPPED`.

    The threads are set first with ``configure_threads()`` (see the module's docstring).

    Returns:
        0 when ``main`` finished, :data:`SKIPPED` when its files are unavailable. Any other error
        propagates (a failure, not a skip).
    """
    configure_threads()
    try:
        main()
    except (DatasetUnavailableError, WeightsUnavailableError) as exc:
        print("skipped: " + " ".join(str(exc).split()), flush=True)
        return SKIPPED
    return 0


class Budget:
    """A wall-clock budget of ``max_minutes`` shared by the training runs of one benchmark.

    The clock starts when the budget is made. :meth:`share` gives the next run the time left
    divided by the runs left, so time a fast run does not use goes to the runs after it.

    Args:
        max_minutes: the budget; None for no limit.

    Raises:
        ValueError: if ``max_minutes`` is not positive.
    """

    def __init__(self, max_minutes: float | None) -> None:
        if max_minutes is not None and max_minutes <= 0:
            raise ValueError(f"--max-minutes {max_minutes} must be positive (or left out for no limit).")
        self.max_minutes = max_minutes
        self.start = time.perf_counter()

    def left(self) -> float | None:
        """Seconds left (0 when spent), or None without a budget."""
        if self.max_minutes is None:
            return None
        return max(0.0, 60 * self.max_minutes - (time.perf_counter() - self.start))

    def spent(self) -> bool:
        """True once the budget is used up (never without a budget)."""
        left = self.left()
        return left is not None and left <= 0

    def share(self, runs_left: int) -> float | None:
        """Seconds for the next of ``runs_left`` runs (None without a budget, 0 when it is spent).

        A run given 0 still trains its first epoch or iteration (``fit`` and ``meta_train``
        check the limit after each), so every run reports a result.
        """
        left = self.left()
        return None if left is None else left / max(1, runs_left)

    def record(self, history: History | None, limit: float | None, unit: str = "epochs") -> dict[str, Any]:
        """How far a run got, for the JSON: budget, its share, stopped early or not, done and planned.

        Args:
            history: the run's history (``planned`` and ``stopped_early`` set by ``fit`` or
                ``meta_train``); None for a run without a training loop.
            limit: the seconds the run was given (:meth:`share`).
            unit: ``"epochs"`` (``fit``) or ``"iterations"`` (``meta_train``, whose records carry
                the ``step`` they were written at).
        """
        done = 0
        if history is not None and len(history):
            done = int(history["step"][-1]) if unit == "iterations" else len(history)
        return {
            "max_minutes": self.max_minutes,
            "run_limit_minutes": None if limit is None else round(limit / 60, 3),
            "stopped_early": bool(history is not None and history.stopped_early),
            f"{unit}_done": done,
            f"{unit}_planned": history.planned if history is not None else None,
        }


__all__ = ["Budget", "RESULTS_DIR", "SKIPPED", "add_run_arguments", "output_path", "run_or_skip"]
