"""Run every benchmark in one mode, keep going past failures, then refresh the README table.

A benchmark that fails is reported and its previous JSON files are restored, so old numbers are
never overwritten with nothing (or with half a run).

Usage:
    python tools/run_benchmarks.py --mode reduced
    python tools/run_benchmarks.py --mode full --data-root data --omniglot-root data/omniglot-py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def plan(mode: str, data_root: str | None, omniglot_root: str | None) -> list[list[str]]:
    """The benchmark command lines for ``mode`` (arguments after ``python``)."""
    b = "benchmarks/"
    if mode == "reduced":
        runs = [[b + "engine_overhead.py", "--reduced"], [b + "finetune.py", "--reduced"], [b + "features.py", "--reduced"],
                [b + "domain_adaptation.py", "--reduced", "--seeds", "0", "1", "2"]]
        # 600 test episodes (the protocol) where evaluation is cheap; MAML/Reptile adapt per episode.
        runs += [[b + "fewshot.py", "--reduced", "--method", m, "--way", w, "--shot", s,
                  *(["--episodes", "600"] if m in ("protonet", "linear") else [])]
                 for m in ("protonet", "maml", "fomaml", "reptile", "linear") for w in ("5", "20") for s in ("1", "5")
                 if w == "5" or m in ("protonet", "linear")]
        return [*runs, [b + "notebook_times.py", "--reduced"]]
    root = ["--data-root", data_root] if data_root else []
    runs = [[b + "engine_overhead.py"], [b + "finetune.py"], [b + "features.py"]]
    runs += [[b + "domain_adaptation.py", "--source", s, "--target", t, "--seeds", "0", "1", "2", *root]
             for s, t in (("mnist", "mnistm"), ("svhn", "mnist"), ("mnist", "usps"))]
    omni = ["--data-root", omniglot_root] if omniglot_root else root
    runs += [[b + "fewshot.py", "--dataset", "omniglot", *omni, "--method", m, "--way", w, "--shot", s]
             for m in ("protonet", "maml") for w in ("5", "20") for s in ("1", "5")]
    return [*runs, [b + "notebook_times.py"]]


def _snapshot() -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in RESULTS.glob("*.json")}


def _restore(before: dict[Path, bytes]) -> None:
    for p in RESULTS.glob("*.json"):
        if p not in before:
            p.unlink()
    for p, data in before.items():
        if not p.exists() or p.read_bytes() != data:
            p.write_bytes(data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("reduced", "full"), default="reduced")
    parser.add_argument("--data-root", default=None, help="folder with torchvision datasets (full mode)")
    parser.add_argument("--omniglot-root", default=None, help="Omniglot folder for the few-shot runs (full mode)")
    parser.add_argument("--only", default=None, help="run only benchmarks whose script name contains this")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TLH_REDUCED": "1" if args.mode == "reduced" else "0"}
    failures = []
    for cmd in plan(args.mode, args.data_root, args.omniglot_root):
        if args.only and args.only not in cmd[0]:
            continue
        before = _snapshot()
        print(f"$ python {' '.join(cmd)}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run([sys.executable, *cmd], cwd=ROOT, env=env).returncode
        if rc != 0:
            _restore(before)
            failures.append(f"{' '.join(cmd)} (exit {rc})")
            print(f"  FAILED after {time.perf_counter() - t0:.0f}s; previous results kept", flush=True)
    subprocess.run([sys.executable, "tools/update_results.py"], cwd=ROOT, check=True)
    if failures:
        print("failed benchmarks:\n  " + "\n  ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
