"""Overhead of ``tlhelpers.training.engine.fit`` against a bare PyTorch loop on the same model and data.

Both loops train the same small CNN on the same in-memory batches with AdamW; runs alternate
(bare, engine, bare, engine, ...) so machine noise hits both alike. The reported overhead is the
median over pairs of (engine time / bare time) of back-to-back runs; the ratio of the fastest runs
is printed beside it as a check. Progress bars are on in the engine run, as students see it.

``--max-minutes``: no new pair starts once the budget is spent (the warm-up pair and one timed
pair always run); the JSON's ``budget`` records the pairs done and planned. ``TLH_SMOKE=1``
shrinks the full-mode counts (images, epochs, repeats).

Usage:
    python benchmarks/engine_overhead.py [--reduced] [--repeats 7] [--max-minutes M] [--out FILE]
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import time
from contextlib import redirect_stderr
from datetime import datetime, timezone

import torch
import torch.nn.functional as F
from harness import Budget, add_run_arguments, output_path, run_or_skip
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tlhelpers.core.runtime import count, get_device, is_reduced, mode_name, seed_everything
from tlhelpers.training.engine import fit


def make_model() -> nn.Module:
    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))

    return nn.Sequential(block(3, 32), block(32, 64), block(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))


def bare_loop(model: nn.Module, loader: DataLoader, num_epochs: int, device: torch.device) -> None:
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(num_epochs):
        model.train()
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()


def engine_loop(model: nn.Module, loader: DataLoader, num_epochs: int, device: torch.device) -> None:
    with redirect_stderr(io.StringIO()):  # the bars still render; we just don't print them here
        fit(model, loader, num_epochs, lr=1e-3, device=device, amp=False, progress=True)
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reduced", action="store_true", help="small sizes for a CPU (also TLH_REDUCED=1)")
    parser.add_argument("--repeats", type=int, default=None, help="timed pairs (default 7)")
    add_run_arguments(parser)
    args = parser.parse_args()
    budget = Budget(args.max_minutes)
    reduced = args.reduced or is_reduced()
    device = get_device()
    # counts of full mode shrink in a smoke run (TLH_SMOKE=1); reduced mode keeps its own
    n, size, epochs = (1024, 32, 2) if reduced else (count(8192, 128), 64, count(2, 1))
    args.repeats = args.repeats or (7 if reduced else count(7, 1))
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g))
    loader = DataLoader(data, batch_size=64, shuffle=True)

    times: dict[str, list[float]] = {"bare": [], "engine": []}
    for rep in range(args.repeats + 1):  # the first pair warms up and is discarded
        if rep > 1 and budget.spent():
            break
        for name, loop in (("bare", bare_loop), ("engine", engine_loop)):
            seed_everything(rep)
            model = make_model()
            t0 = time.perf_counter()
            loop(model, loader, epochs, device)
            if rep > 0:
                times[name].append(time.perf_counter() - t0)
    bare, engine = statistics.median(times["bare"]), statistics.median(times["engine"])
    ratio = statistics.median(e / b for e, b in zip(times["engine"], times["bare"]))
    ratio_min = min(times["engine"]) / min(times["bare"])
    result = {
        "benchmark": "engine_overhead",
        "mode": "reduced" if reduced else mode_name(),
        "device": str(device),
        "hardware": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "config": {"images": n, "image_size": size, "num_epochs": epochs, "batch_size": 64, "repeats": args.repeats,
                   "max_minutes": args.max_minutes},
        "budget": {"max_minutes": args.max_minutes, "stopped_early": len(times["bare"]) < args.repeats,
                   "repeats_done": len(times["bare"]), "repeats_planned": args.repeats},
        "seconds": times,
        "median_bare_s": bare,
        "median_engine_s": engine,
        "overhead_ratio": ratio,
        "overhead_ratio_of_fastest": ratio_min,
        "target_ratio": 1.05,
    }
    out = output_path(args, f"engine_overhead_{result['mode']}.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"engine_overhead mode={result['mode']} device={device} bare={bare:.2f}s engine={engine:.2f}s "
          f"ratio={ratio:.3f} (fastest runs: {ratio_min:.3f}; target <= 1.05) -> {out}")


if __name__ == "__main__":
    raise SystemExit(run_or_skip(main))
