"""Run every course notebook top to bottom and record its wall time (for the README's chapter table).

Each notebook runs in a fresh kernel from its own folder, as a student would run it, in the mode
given by ``--reduced`` / ``TLH_REDUCED``. Caches in ``data/`` are kept between notebooks, as they are
in a class; pass ``--cold`` to time each notebook with an empty data folder instead.

Usage:
    python benchmarks/notebook_times.py [--reduced] [--cold] [--out FILE]
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
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reduced", action="store_true", help="reduced mode (also TLH_REDUCED=1)")
    parser.add_argument("--cold", action="store_true", help="each notebook with an empty data folder")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.reduced:
        os.environ["TLH_REDUCED"] = "1"
    mode = "reduced" if os.environ.get("TLH_REDUCED", "0").lower() in {"1", "true", "yes", "on"} else "full"
    times = {}
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        with tempfile.TemporaryDirectory() as tmp:
            if args.cold:
                os.environ["TLH_DATA"] = tmp
            t0 = time.perf_counter()
            NotebookClient(nb, timeout=args.timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
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
    }
    out = args.out or ROOT / "benchmarks" / "results" / f"notebook_times_{mode}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"notebook_times mode={mode} total={sum(times.values()):.0f}s -> {out}")


if __name__ == "__main__":
    main()
