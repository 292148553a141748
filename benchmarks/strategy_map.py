"""Benchmark of chapter 5: the measured strategy map, five methods by labelled images per class.

Reduced mode only (``--reduced``): on chapter 1's reduced data (shapes classes 0-9, mini_resnet
proxy-pretrained on classes 10-19, 32 px, CPU) and both targets (``near``, ``far``), it crosses
k = 1, 5, 20 and all 100 labelled training images per class with five methods (from scratch,
linear probe on frozen features, head + last stage, full fine-tuning with discriminative LR,
nearest prototype by cosine similarity on frozen features; see :mod:`tlhelpers.course.strategy_map`) over
the seeds of ``--seeds`` (0 1 2). Fine-tuning runs train for a fixed number of steps
(``max(100, 8 epochs)``, recorded per k in the config), and the final model is tested: nothing is
selected by test accuracy. The test set is the same 100 images per class for every k.

The map is a reduced-mode study: full mode would need a grid of ResNet-50 runs on Pets at every k
and seed, which no benchmark budget of this course covers, so without ``--reduced`` the script
prints ``skipped: <reason>`` and exits with status 3 (the runner keeps the previous JSON).

Writes ``benchmarks/results/strategy_map_reduced.json``: per-seed records, mean and std per
(target, method, k), the best method of every (target, k), the methods it does not clearly beat,
and whether it wins decisively (ahead of every other method by ``--margin`` in every seed), the
resolved config, hardware, date, versions.
``--max-minutes`` is split evenly among the (target, seed) blocks still to run.

Usage:
    OMP_NUM_THREADS=1 TLH_REDUCED=1 python benchmarks/strategy_map.py --reduced
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time

import sklearn
import torch
import torchvision
from harness import SKIPPED, Budget, add_run_arguments, output_path, run_or_skip

from tlhelpers.core.runtime import get_device, seed_everything
from tlhelpers.course.strategy_map import (
    METHOD_NAMES,
    METHODS,
    MapConfig,
    best_methods,
    map_summary,
    run_seed,
)

SKIP_REASON = ("the strategy map is a reduced-mode study (a grid of ResNet-50 runs on Pets at every k and seed is "
               "beyond a benchmark budget); run it with --reduced")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reduced", action="store_true", help="offline shapes, mini_resnet, CPU-sized (the only mode)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of data, pretraining and init")
    parser.add_argument("--targets", nargs="+", choices=("near", "far"), default=["near", "far"])
    parser.add_argument("--shots", type=int, nargs="+", default=None, help="labelled images per class (default 1 5 20 100)")
    parser.add_argument("--margin", type=float, default=0.03, help="per-seed lead that makes a winner decisive")
    parser.add_argument("--device", default=None)
    add_run_arguments(parser)
    args = parser.parse_args()
    if not args.reduced:
        print(f"skipped: {SKIP_REASON}", flush=True)
        raise SystemExit(SKIPPED)

    budget = Budget(args.max_minutes)
    config = MapConfig(shots=tuple(args.shots)) if args.shots else MapConfig()
    device = get_device(args.device)
    start = time.perf_counter()
    blocks = [(t, s) for t in args.targets for s in args.seeds]
    records = []
    for i, (target, seed) in enumerate(blocks):
        seed_everything(seed)
        block = run_seed(target, seed, config, device=device, time_limit=budget.share(len(blocks) - i))
        records += block
        print(f"strategy_map [reduced] {target} seed {seed}: " + ", ".join(
            f"{r['method']}@{r['k']} {100 * r['test_acc']:.1f}%" for r in block), flush=True)
    summary = map_summary(records)
    best = best_methods(summary, args.margin)
    report = {
        "benchmark": "strategy_map", "mode": "reduced",
        "config": {**config.to_dict(), "seeds": args.seeds, "targets": args.targets, "methods": list(METHODS),
                   "method_names": METHOD_NAMES, "margin": args.margin, "max_minutes": args.max_minutes,
                   "test_images_per_class": config.n_per_class, "selection": "none: fixed steps and LR, final model tested"},
        "summary": summary, "best": best, "records": records,
        "stopped_early": sum(bool(r.get("stopped_early")) for r in records),
        "total_seconds": round(time.perf_counter() - start, 1),
        "hardware": {
            "device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__, "sklearn": sklearn.__version__,
                     "python": platform.python_version()},
    }
    out = output_path(args, "strategy_map_reduced.json")
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, out)
    for row in summary:
        print(f"{row['target']:>4} {row['method']:>12} k={row['k']:>3}: {100 * row['mean']:5.1f} ± {100 * row['std']:.1f}%")
    for cell in best:
        verdict = "decisive" if cell["decisive"] else "not decisive"
        print(f"{cell['target']:>4} k={cell['k']:>3}: best {cell['best']} ({verdict}, min per-seed lead "
              f"{100 * cell['min_gap']:.1f} pts; not clearly beaten: {', '.join(cell['top'])})")
    note = f"; {report['stopped_early']} runs stopped early by --max-minutes" if report["stopped_early"] else ""
    print(f"strategy_map [reduced] {report['total_seconds']:.0f} s{note} -> {out}")


if __name__ == "__main__":
    raise SystemExit(run_or_skip(main))
