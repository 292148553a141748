"""Run every notebook top to bottom at the **full** and **laptop** budgets, offline, on tiny files in the real layouts.

The full budget is what a class runs on Colab GPUs, the laptop budget what a student runs on a CPU with
the real data and weights; this is how CI checks both code paths on a CPU without a network:

- tiny datasets in each dataset's real on-disk layout (Pets JPEGs and annotation lists, MNIST idx,
  USPS bz2, SVHN mat, Omniglot folders, MNIST-M PNGs and label lists) go into a temporary
  ``TLH_DATA``, written by ``tests/fakes.py``;
- randomly initialised weights files, under the names torchvision expects, go into a temporary
  ``TORCH_HOME``;
- ``TLH_SMOKE=1`` shrinks only the counts (epochs, iterations, episodes, images; see
  ``tlhelpers.core.runtime.count``); loaders, models, transforms, image sizes, subsets and plots are
  those of the budget's real run;
- the two budgets run at the same time, each in its own data folder with one CPU thread per kernel
  (the notebooks spend most of a smoke run starting kernels and importing, not computing);
- ``tools/offline_guard`` refuses every connection off this machine, so a download attempt fails,
  and logs it: the run fails if any notebook tried to reach the network, even if it coped.

Usage:
    python tools/full_mode_smoke.py                 # every notebook at both budgets, as `make test` runs it
    python tools/full_mode_smoke.py notebooks/03_domain_adaptation_dann.ipynb -x --budgets laptop
    python tools/full_mode_smoke.py --keep /tmp/smoke   # keep the files (a second run reuses them)

Extra arguments go to pytest. Exit status: pytest's (0 when it collects nothing).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS_ARCHS = ("resnet50", "vgg16", "resnet18")  # chapters 1-2 and the student project


def _fakes():
    spec = importlib.util.spec_from_file_location("fakes", ROOT / "tests" / "fakes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUDGETS = ("full", "laptop")


def prepare(folder: Path, budget: str = "full") -> dict[str, str]:
    """Write the tiny datasets and weights under ``folder`` (once) and return the run's environment."""
    data, torch_home = folder / budget / "data", folder / "torch"
    if not (data / ".complete").exists():
        fakes = _fakes()
        fakes.write_all_datasets(data)
        (data / ".complete").touch()
    _fakes().write_weights(torch_home, archs=WEIGHTS_ARCHS)  # skips files already there
    guard = str(ROOT / "tools" / "offline_guard")
    return {
        **os.environ,
        "TLH_BUDGET": budget,
        "TLH_SMOKE": "1",
        "TLH_THREADS": "1",
        "TLH_DATA": str(data),
        "TORCH_HOME": str(torch_home),
        "TLH_DEVICE": "cpu",
        "PYTHONPATH": os.pathsep.join(p for p in (guard, os.environ.get("PYTHONPATH")) if p),
        "TLH_OFFLINE_GUARD_LOG": str(folder / budget / "network-attempts.log"),
        **{name: "http://127.0.0.1:9" for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")},
        "NO_PROXY": "",
        "TQDM_MININTERVAL": os.environ.get("TQDM_MININTERVAL", "10"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, default=None, help="folder for the tiny files (default: a temporary one)")
    parser.add_argument("--budgets", default=",".join(BUDGETS), help="comma-separated, of: " + ", ".join(BUDGETS))
    args, pytest_args = parser.parse_known_args(argv)
    budgets = [b for b in args.budgets.split(",") if b]
    if not budgets or any(b not in BUDGETS for b in budgets):
        parser.error(f"--budgets {args.budgets!r}: use a comma-separated list of {', '.join(BUDGETS)}")
    targets = [a for a in pytest_args if not a.startswith("-")] or ["notebooks", "examples"]
    options = [a for a in pytest_args if a.startswith("-")]
    with tempfile.TemporaryDirectory(prefix="tlh-full-smoke-") as tmp:
        folder = args.keep or Path(tmp)
        t0 = time.perf_counter()
        envs = {budget: prepare(folder, budget) for budget in budgets}
        print(f"smoke run at the {' and '.join(budgets)} budgets: tiny files and weights in {folder} "
              f"({time.perf_counter() - t0:.1f} s to write)", flush=True)
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env",
               *options, *targets]
        logs = {budget: folder / budget / "pytest.log" for budget in budgets}
        runs = {}
        for budget in budgets:
            with logs[budget].open("w") as log:
                runs[budget] = subprocess.Popen(cmd, cwd=ROOT, env=envs[budget], stdout=log, stderr=subprocess.STDOUT)
        codes = {budget: run.wait() for budget, run in runs.items()}
        failed = False
        for budget in budgets:
            print(f"\n===== {budget} budget (smoke run): pytest exit {codes[budget]} =====\n{logs[budget].read_text()}",
                  flush=True)
            attempts = Path(envs[budget]["TLH_OFFLINE_GUARD_LOG"])
            if attempts.exists():
                print(f"FAILED: the {budget} budget tried to reach the network with its files present:\n"
                      f"{attempts.read_text()}")
                attempts.unlink()
                failed = True
    if failed:
        return 1
    worst = max(codes.values(), key=lambda rc: (rc not in (0, 5), rc))
    if worst == 5:
        print("pytest collected no tests here")
        return 0
    return worst


if __name__ == "__main__":
    raise SystemExit(main())
