"""Run every course notebook top to bottom and record its wall time (for the README's chapter table).

Each notebook runs in a fresh kernel from its own folder, as a student would run it, in the mode
given by ``--reduced`` / ``TLH_REDUCED``. Caches in ``data/`` are kept between notebooks, as they are
in a class; pass ``--cold`` to time each notebook with an empty data folder instead.

In full mode the notebooks read their files from ``--data-root`` (passed on as ``TLH_DATA``). A
notebook that stops on missing dataset or weights files makes the whole run print
``skipped: <reason>`` and exit with status 3 (the previous times are kept). ``--max-minutes``:
no notebook starts once the budget is spent; the JSON's ``budget`` records those done and planned.

Usage:
    python benchmarks/notebook_times.py [--reduced] [--cold] [--data-root DIR] [--max-minutes M] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import torch
from harness import SKIPPED, Budget, add_run_arguments, output_path
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reduced", action="store_true", help="reduced mode (also TLH_REDUCED=1)")
    parser.add_argument("--cold", action="store_true", help="each notebook with an empty data folder")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    add_run_arguments(parser, data_help="data folder the notebooks read (sets TLH_DATA)")
    args = parser.parse_args()
    budget = Budget(args.max_minutes)
    if args.reduced:
        os.environ["TLH_REDUCED"] = "1"
    if args.data_root:
        os.environ["TLH_DATA"] = str(Path(args.data_root).resolve())
    mode = "reduced" if os.environ.get("TLH_REDUCED", "0").lower() in {"1", "true", "yes", "on"} else "full"
    times = {}
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in notebooks:
        if times and budget.spent():
            break
        nb = nbformat.read(path, as_version=4)
        with tempfile.TemporaryDirectory() as tmp:
            if args.cold:
                os.environ["TLH_DATA"] = tmp
            t0 = time.perf_counter()
            client = NotebookClient(nb, timeout=args.timeout, kernel_name="python3",
                                    resources={"metadata": {"path": str(path.parent)}})
            try:
                client.execute()
            except CellExecutionError as exc:
                if exc.ename in ("DatasetUnavailableError", "WeightsUnavailableError"):
                    print(f"skipped: {path.name}: {exc.ename}: {' '.join(str(exc.evalue).split())}", flush=True)
                    raise SystemExit(SKIPPED) from None
                raise
            times[path.name] = round(time.perf_counter() - t0, 1)
        print(f"{times[path.name]:7.1f} s  {path.name}", flush=True)
    result = {
        "benchmark": "notebook_times",
        "mode": mode,
        "cold": args.cold,
        "hardware": torch.cuda.get_device_name() if torch.cuda.is_available() else f"{platform.machine()} CPU, {os.cpu_count()} cores",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "seconds": times,
        "budget": {"max_minutes": args.max_minutes, "stopped_early": len(times) < len(notebooks),
                   "notebooks_done": len(times), "notebooks_planned": len(notebooks)},
    }
    out = output_path(args, f"notebook_times_{mode}.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"notebook_times mode={mode} total={sum(times.values()):.0f}s -> {out}")


if __name__ == "__main__":
    main()
