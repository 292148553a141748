"""Run every benchmark in one mode, keep going past failures and skips, then refresh the README tables.

In full mode every benchmark gets ``--data-root`` (and ``TLH_DATA``) and the runner first checks
the dataset and weights files it reads (``tlhelpers.data.catalog``): a benchmark whose files are
missing is skipped with a one-line reason naming them, unless ``--download`` lets it fetch them.
With every file present nothing touches the network. A benchmark can also skip itself (exit
status 3 and a ``skipped: <reason>`` line, see ``benchmarks/harness.py``). A benchmark that fails
or is skipped has its previous JSON restored, so old numbers are never overwritten with nothing
(or with half a run). The run ends with a summary; the exit status is 1 if a benchmark failed and
0 otherwise (skips are not failures).

Usage:
    python tools/run_benchmarks.py --mode reduced
    python tools/run_benchmarks.py --mode full --data-root data --max-minutes 60
    python tools/run_benchmarks.py --mode full --data-root data --only fewshot --results-dir /tmp/r
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

from benchmarks.harness import SKIPPED  # noqa: E402
from tlhelpers.data.catalog import CHAPTERS, missing_files  # noqa: E402


@dataclass(frozen=True)
class Job:
    """One benchmark run: its command line (after ``python``) and the files it reads in full mode."""

    args: tuple[str, ...]
    datasets: tuple[str, ...] = ()
    archs: tuple[str, ...] = ()

    @property
    def line(self) -> str:
        """The command line as printed (and matched by ``--only``)."""
        return " ".join(self.args)


def plan(
    mode: str,
    data_root: str | None = None,
    omniglot_folder: str | None = None,
    max_minutes: float | None = None,
    results_dir: Path | None = None,
) -> list[Job]:
    """The benchmark runs of ``mode``; every one gets the budget and the results folder when given.

    Full mode passes ``data_root`` to every benchmark that reads data (the few-shot runs read
    ``omniglot_folder`` instead when it is given, an extracted alphabet/character tree).
    """
    b = "benchmarks/"
    common = (*(("--max-minutes", f"{max_minutes:g}") if max_minutes else ()),
              *(("--results-dir", str(results_dir)) if results_dir is not None else ()))
    if mode == "reduced":
        runs = [(b + "engine_overhead.py", "--reduced"), (b + "finetune.py", "--reduced"), (b + "features.py", "--reduced"),
                (b + "domain_adaptation.py", "--reduced", "--seeds", "0", "1", "2")]
        # every method on the same 600 test episodes of the packaged Omniglot subset (5-way), 20-way for two
        runs += [(b + "fewshot.py", "--reduced", "--method", m, "--way", w, "--shot", s)
                 for m in ("protonet", "maml", "fomaml", "protomaml", "reptile", "linear") for w in ("5", "20") for s in ("1", "5")
                 if w == "5" or m in ("protonet", "linear")]
        runs += [(b + "fewshot_speed.py", "--reduced")]
        runs += [(b + "shared_cpu.py", "--reduced")]  # busy processes of its own: keep it out of the others' way
        runs += [(b + "strategy_map.py", "--reduced")]  # chapter 5's map: reduced mode only (it skips in full mode)
        runs += [(b + "notebook_times.py", "--reduced")]
        return [Job((*r, *common)) for r in runs]
    root = ("--data-root", data_root) if data_root else ()
    ch = CHAPTERS
    jobs = [Job((b + "engine_overhead.py", *common)),
            Job((b + "finetune.py", *root, *common), ch["1"].datasets, ch["1"].archs),
            Job((b + "features.py", *root, *common), ch["2"].datasets, ch["2"].archs)]
    jobs += [Job((b + "domain_adaptation.py", "--source", s, "--target", t, "--seeds", "0", "1", "2", *root, *common), (s, t))
             for s, t in (("mnist", "mnistm"), ("svhn", "mnist"), ("mnist", "usps"))]
    omniglot = ("--omniglot-folder", omniglot_folder) if omniglot_folder else root
    jobs += [Job((b + "fewshot.py", "--dataset", "omniglot", "--method", m, "--way", w, "--shot", s, *omniglot, *common),
                 () if omniglot_folder else ch["4"].datasets)
             for m in ("protonet", "maml", "protomaml") for w in ("5", "20") for s in ("1", "5")]
    # the notebooks read every chapter's files except those only a benchmark reads
    jobs.append(Job((b + "notebook_times.py", *root, *common),
                    tuple(dict.fromkeys(d for c in ch.values() for d in c.datasets)),
                    tuple(dict.fromkeys(a for c in ch.values() for a in c.archs))))
    return jobs


def _snapshot(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.glob("*.json")}


def _restore(folder: Path, before: dict[Path, bytes]) -> None:
    for p in folder.glob("*.json"):
        if p not in before:
            p.unlink()
    for p, data in before.items():
        if not p.exists() or p.read_bytes() != data:
            p.write_bytes(data)


def run_job(job: Job, env: dict[str, str]) -> tuple[int, str | None]:
    """Run one benchmark, echoing its output; return its exit status and its ``skipped:`` reason, if any."""
    proc = subprocess.Popen([sys.executable, *job.args], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    reason = None
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        if line.startswith("skipped: "):
            reason = line[len("skipped: "):].strip()
    return proc.wait(), reason


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("reduced", "full"), default="reduced")
    parser.add_argument("--data-root", default=None,
                        help="folder with the datasets in torchvision's layouts (default TLH_DATA or data/)")
    parser.add_argument("--omniglot-folder", default=None,
                        help="full mode: an extracted alphabet/character tree for the few-shot runs instead of <data root>/omniglot-py")
    parser.add_argument("--max-minutes", type=float, default=None, help="time budget of each benchmark's training")
    parser.add_argument("--download", action="store_true",
                        help="full mode: let benchmarks download missing files instead of skipping them")
    parser.add_argument("--only", nargs="+", default=None,
                        help="run only the benchmarks whose command line contains one of these strings")
    parser.add_argument("--results-dir", type=Path, default=None,
                        help=f"where the JSON goes (default {RESULTS.relative_to(ROOT)}; elsewhere the README is left alone)")
    args = parser.parse_args(argv)
    results = (args.results_dir or RESULTS).resolve()
    results.mkdir(parents=True, exist_ok=True)
    data_root = str(Path(args.data_root).resolve()) if args.data_root else None
    env = {**os.environ, "TLH_REDUCED": "1" if args.mode == "reduced" else "0"}
    if data_root:
        env["TLH_DATA"] = data_root
    jobs = plan(args.mode, data_root, args.omniglot_folder, args.max_minutes, args.results_dir and results)
    jobs = [j for j in jobs if not args.only or any(o in j.line for o in args.only)]
    ran, skipped, failed = [], [], []
    for job in jobs:
        print(f"$ python {job.line}", flush=True)
        if args.mode == "full" and not args.download:
            missing = missing_files(job.datasets, job.archs, data_root=data_root)
            if missing:
                skipped.append(f"{job.line}: missing {', '.join(missing)}")
                print(f"  skipped: {len(missing)} file(s) missing: {', '.join(missing)}", flush=True)
                continue
        before = _snapshot(results)
        t0 = time.perf_counter()
        rc, reason = run_job(job, env)
        if rc == 0:
            ran.append(job.line)
            continue
        _restore(results, before)
        if rc == SKIPPED:
            skipped.append(f"{job.line}: {reason or 'no reason given'}")
            print("  skipped; previous results kept", flush=True)
        else:
            failed.append(f"{job.line} (exit {rc})")
            print(f"  FAILED after {time.perf_counter() - t0:.0f}s; previous results kept", flush=True)
    if results == RESULTS.resolve():
        subprocess.run([sys.executable, "tools/update_results.py"], cwd=ROOT, check=True)
    else:
        print(f"results in {results}; README.md left as it is")
    print(f"summary: {len(ran)} ran, {len(skipped)} skipped, {len(failed)} failed")
    for title, items in (("skipped", skipped), ("failed", failed)):
        if items:
            print(f"{title}:\n  " + "\n  ".join(items))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
