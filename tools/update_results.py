"""Regenerate the README's results table from ``benchmarks/results/*.json``.

Usage:
    python tools/update_results.py          # rewrite the table between the README's markers
    python tools/update_results.py --check  # exit 1 if the README's table is not what the JSON says
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tlhelpers.results import load_results, results_markdown  # noqa: E402

START, END = "<!-- results:start -->", "<!-- results:end -->"


def render_readme(readme: str) -> str:
    if START not in readme or END not in readme:
        raise SystemExit(f"README.md lacks the {START} / {END} markers.")
    table = results_markdown(load_results(ROOT / "benchmarks" / "results"))
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}\n{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    path = ROOT / "README.md"
    current = path.read_text()
    new = render_readme(current)
    if args.check:
        if new != current:
            print("README.md's results table is out of date: run `make results` or `python tools/update_results.py`.")
            return 1
        return 0
    path.write_text(new)
    print("README.md results table updated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
