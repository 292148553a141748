"""Run every course notebook top to bottom and record its wall time (for the README's chapter table).

Each notebook runs in a fresh kernel from its own folder, as a student would run it, at the budget
given by ``--budget`` (``reduced``, ``laptop`` or ``full``; ``--reduced`` is ``--budget reduced``;
left out, the course's own choice, ``tlhelpers.core.runtime.select_budget()``). Caches in ``data/``
are kept between notebooks, as they are in a class; pass ``--cold`` to time each notebook with an
empty data folder instead.

At the laptop and full budgets the notebooks read their files from ``--data-root`` (passed on as
``TLH_DATA``). ``--stand-ins DIR`` (laptop budget only) times the laptop budget without the real
files: stand-in datasets with the real numbers and sizes of files (``tests/fakes.py``) go into
``DIR/data`` and randomly initialised weights into ``DIR/torch`` (written once), and the notebooks run
on the CPU with ``TLH_CLAIMS=0`` (their accuracy claims print instead of failing: random weights
change the values, not the cost). The JSON then says ``"weights": "random (stand-in files at the real
sizes)"`` and ``"accuracy": "not measured"``.

A notebook that stops on missing dataset or weights files makes the whole run print
``skipped: <reason>`` and exit with status 3 (the previous times are kept). ``--max-minutes``:
no notebook starts once the budget is spent; the JSON's ``budget`` records those done and planned.
``--only NAME ...`` times some notebooks and merges their times into the budget's existing JSON
(the other notebooks keep theirs; ``dates`` records each notebook's own date).

Usage:
    python benchmarks/notebook_times.py [--budget {reduced,laptop,full}] [--reduced] [--cold]
        [--data-root DIR] [--stand-ins DIR] [--only NAME [NAME ...]] [--max-minutes M] [--out FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUDGETS = ("reduced", "laptop", "full")
#: The archs whose ImageNet weights the notebooks load (chapters 1-2 and the student project).
WEIGHTS_ARCHS = ("resnet50", "vgg16", "resnet18")
STAND_IN_WEIGHTS = "random (stand-in files at the real sizes)"
REAL_WEIGHTS = "ImageNet"
#: The reduced budget has no ImageNet weights: small networks pretrained offline on related generated tasks.
REDUCED_WEIGHTS = "offline stand-ins (small networks pretrained on generated tasks)"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see the module's docstring)."""
    from harness import add_run_arguments

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--budget", choices=BUDGETS, default=None,
                        help="the course's budget (sets TLH_BUDGET); default: what the course would choose here")
    parser.add_argument("--reduced", action="store_true", help="same as --budget reduced")
    parser.add_argument("--stand-ins", type=Path, default=None, metavar="DIR",
                        help="laptop budget: time on stand-in files of the real sizes and random weights kept in DIR")
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME",
                        help="time these notebooks only (file name or stem) and merge into the budget's JSON")
    parser.add_argument("--cold", action="store_true", help="each notebook with an empty data folder")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    add_run_arguments(parser, data_help="data folder the notebooks read (sets TLH_DATA)")
    return parser.parse_args(argv)


def resolve_budget(args: argparse.Namespace) -> str:
    """The budget to time: ``--budget``, ``--reduced``, else the course's choice on this machine.

    Raises:
        ValueError: for ``--reduced`` with another ``--budget``, or ``--stand-ins`` outside the laptop
            budget or together with ``--data-root``.
    """
    if args.reduced and args.budget not in (None, "reduced"):
        raise ValueError(f"--reduced contradicts --budget {args.budget}; pass one of them.")
    if args.budget:
        name = args.budget
    elif args.reduced:
        name = "reduced"
    else:
        from tlhelpers.core.runtime import budget

        name = budget()
    if args.stand_ins is not None and name != "laptop":
        raise ValueError(f"--stand-ins times the laptop budget, not {name!r}; add --budget laptop or drop --stand-ins.")
    if args.stand_ins is not None and getattr(args, "data_root", None):
        raise ValueError("--stand-ins writes its own data folder; drop --data-root (or drop --stand-ins to use it).")
    return name


def _fakes() -> ModuleType:
    """``tests/fakes.py``, the stand-in writers (imported from its path, as tools/full_mode_smoke.py does)."""
    spec = importlib.util.spec_from_file_location("fakes", ROOT / "tests" / "fakes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prepare_stand_ins(folder: str | Path, fakes: Any = None) -> dict[str, str]:
    """Write the laptop budget's stand-in datasets and random weights under ``folder`` (once); the run's settings.

    The datasets go into ``folder/data`` (a ``.complete`` marker there says they are all written, so a
    second run reuses them), the weights into ``folder/torch`` (files already there are kept).

    Args:
        folder: where the stand-ins live.
        fakes: the module with ``write_laptop_datasets`` and ``write_weights``; None: ``tests/fakes.py``.

    Returns:
        The environment variables the notebooks run with: ``TLH_BUDGET=laptop``, ``TLH_CLAIMS=0``,
        ``TLH_DATA``, ``TORCH_HOME`` and ``TLH_DEVICE=cpu``.
    """
    fakes = _fakes() if fakes is None else fakes
    data, torch_home = Path(folder).resolve() / "data", Path(folder).resolve() / "torch"
    if not (data / ".complete").exists():
        t0 = time.perf_counter()
        data.mkdir(parents=True, exist_ok=True)
        fakes.write_laptop_datasets(data)
        (data / ".complete").touch()
        print(f"stand-in datasets written to {data} in {time.perf_counter() - t0:.0f} s", flush=True)
    fakes.write_weights(torch_home, archs=WEIGHTS_ARCHS)
    return {"TLH_BUDGET": "laptop", "TLH_CLAIMS": "0", "TLH_DATA": str(data), "TORCH_HOME": str(torch_home),
            "TLH_DEVICE": "cpu"}


def select_notebooks(notebooks: Sequence[Path], only: Sequence[str] | None) -> list[Path]:
    """The notebooks to time: all of ``notebooks``, or those ``only`` names (file name or stem), in order.

    Raises:
        ValueError: for a name that is no notebook, listing the notebooks.
    """
    if not only:
        return list(notebooks)
    by_name = {**{p.stem: p for p in notebooks}, **{p.name: p for p in notebooks}}
    unknown = [n for n in only if n not in by_name]
    if unknown:
        raise ValueError(f"--only {' '.join(unknown)}: no such notebook; pick from {', '.join(p.name for p in notebooks)}.")
    chosen = {by_name[n] for n in only}
    return [p for p in notebooks if p in chosen]


def hardware() -> str:
    """The device the notebooks run on: the GPU's name, or the CPU when there is none or ``TLH_DEVICE=cpu``."""
    import torch

    if torch.cuda.is_available() and os.environ.get("TLH_DEVICE", "").strip().lower() != "cpu":
        return torch.cuda.get_device_name()
    return f"{platform.machine()} CPU, {os.cpu_count()} cores"


def build_result(
    budget: str,
    times: dict[str, float],
    *,
    cold: bool,
    stand_ins: bool,
    hardware: str,
    date: str,
    torch_version: str,
    max_minutes: float | None,
    planned: int,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON of a run; with ``previous`` (the budget's existing JSON, for ``--only``) merged in.

    Notebooks timed now get ``times`` and today's date; the others keep their time and date from
    ``previous``. ``budget`` (the time budget) describes this run only.

    Args:
        budget: ``"reduced"``, ``"laptop"`` or ``"full"``.
        times: seconds per notebook file name, of this run.
        cold: each notebook ran from an empty data folder.
        stand_ins: the run used stand-in files and random weights (laptop budget).
        hardware: what :func:`hardware` says.
        date: the run's date and time (UTC, ISO).
        torch_version: ``torch.__version__``.
        max_minutes: ``--max-minutes``.
        planned: the notebooks this run meant to time.
        previous: the JSON to merge into, or None to replace it.

    Raises:
        ValueError: when ``previous`` was measured at another budget, on other hardware, warm vs cold,
            or with other weights: times that could not stand in one column.
    """
    weights = STAND_IN_WEIGHTS if stand_ins else REDUCED_WEIGHTS if budget == "reduced" else REAL_WEIGHTS
    seconds: dict[str, float] = {}
    dates: dict[str, str] = {}
    if previous is not None:
        now = {"mode": budget, "hardware": hardware, "cold": cold, "weights": weights}
        was = {"mode": previous.get("mode"), "hardware": previous.get("hardware"), "cold": bool(previous.get("cold")),
               "weights": previous.get("weights", weights)}  # a file from before the field: measured the same way
        differ = [f"{k} {was[k]!r} -> {now[k]!r}" for k in now if was[k] != now[k]]
        if differ:
            raise ValueError(f"cannot merge into a JSON measured otherwise ({'; '.join(differ)}); "
                             "time every notebook (drop --only) or pass --out to another file.")
        seconds = dict(previous.get("seconds", {}))
        old_date = str(previous.get("date", ""))
        dates = {name: previous.get("dates", {}).get(name, old_date) for name in seconds}
    for name, secs in times.items():
        seconds[name] = secs
        dates[name] = date
    result: dict[str, Any] = {
        "benchmark": "notebook_times",
        "mode": budget,
        "cold": cold,
        "hardware": hardware,
        "date": date,
        "torch": torch_version,
        "weights": weights,
    }
    if stand_ins:
        result["accuracy"] = "not measured"
    result.update({
        "seconds": dict(sorted(seconds.items())),
        "dates": dict(sorted(dates.items())),
        "budget": {"max_minutes": max_minutes, "stopped_early": len(times) < planned,
                   "notebooks_done": len(times), "notebooks_planned": planned},
    })
    return result


def _linked_data_folder(tmp: Path, source: Path) -> None:
    """Fill the empty ``tmp`` with links to ``source``'s datasets (a cold run on stand-ins: no caches, same files)."""
    for entry in source.iterdir():
        if entry.name != ".complete":
            (tmp / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())


def time_notebook(path: Path, timeout: int, cold: bool, stand_in_data: Path | None = None) -> float:
    """Run notebook ``path`` in a fresh kernel from its folder; its wall time in seconds.

    Raises:
        SystemExit: with ``harness.SKIPPED`` when it stops on missing dataset or weights files.
        nbclient.exceptions.CellExecutionError: for any other error in a cell.
    """
    import nbformat
    from harness import SKIPPED
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        if cold:
            os.environ["TLH_DATA"] = tmp
            if stand_in_data is not None:
                _linked_data_folder(Path(tmp), stand_in_data)
        t0 = time.perf_counter()
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}})
        try:
            client.execute()
        except CellExecutionError as exc:
            if exc.ename in ("DatasetUnavailableError", "WeightsUnavailableError"):
                print(f"skipped: {path.name}: {exc.ename}: {' '.join(str(exc.evalue).split())}", flush=True)
                raise SystemExit(SKIPPED) from None
            raise
        return round(time.perf_counter() - t0, 1)


def main(argv: Sequence[str] | None = None) -> None:
    import torch
    from harness import Budget, output_path

    args = parse_args(argv)
    try:
        name = resolve_budget(args)
        notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
        chosen = select_notebooks(notebooks, args.only)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    clock = Budget(args.max_minutes)
    os.environ["TLH_BUDGET"] = name  # the kernels inherit it: every notebook runs at the budget timed
    if name == "laptop":
        os.environ["TLH_DEVICE"] = "cpu"  # the laptop budget's sizes are CPU sizes
    if args.data_root:
        os.environ["TLH_DATA"] = str(Path(args.data_root).resolve())
    stand_in_data = None
    if args.stand_ins is not None:
        os.environ.update(prepare_stand_ins(args.stand_ins))
        stand_in_data = Path(os.environ["TLH_DATA"])
    out = output_path(args, f"notebook_times_{name}.json")
    previous = json.loads(out.read_text()) if args.only and out.exists() else None
    run = {"cold": args.cold, "stand_ins": args.stand_ins is not None, "hardware": hardware(),
           "torch_version": torch.__version__, "max_minutes": args.max_minutes, "planned": len(chosen)}
    try:  # a JSON measured otherwise cannot take these times: say so before running anything
        build_result(name, {}, date="", previous=previous, **run)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    times: dict[str, float] = {}
    for path in chosen:
        if times and clock.spent():
            break
        times[path.name] = time_notebook(path, args.timeout, args.cold, stand_in_data)
        print(f"{times[path.name]:7.1f} s  {path.name}", flush=True)
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result = build_result(name, times, date=date, previous=previous, **run)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"notebook_times budget={name} total={sum(times.values()):.0f}s -> {out}")


if __name__ == "__main__":
    main()
