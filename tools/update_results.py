"""Regenerate the README's generated tables: results and chapters from ``benchmarks/results/*.json``,
and the files of full mode from ``tlhelpers.data.catalog``.

Usage:
    python tools/update_results.py          # rewrite the tables between the README's markers
    python tools/update_results.py --check  # exit 1 if a table is not what the JSON and the catalog say
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tlhelpers.course.results import load_results, notebook_times, results_markdown, run_time  # noqa: E402
from tlhelpers.data.catalog import files_markdown  # noqa: E402

START, END = "<!-- results:start -->", "<!-- results:end -->"
CH_START, CH_END = "<!-- chapters:start -->", "<!-- chapters:end -->"
FILES_START, FILES_END = "<!-- files:start -->", "<!-- files:end -->"
RESULTS = ROOT / "benchmarks" / "results"

# notebook file -> (chapter, topic, sections of the reference article)
CHAPTERS = {
    "00_introduction.ipynb": ("0", "what transfer learning is; setup check; a CPU mini-lab where pretraining pays off", "1-2"),
    "01_finetuning_resnet50.ipynb": ("1", "fine-tuning ResNet-50: head only, last stage, full with discriminative LRs, from scratch", "3.1, 4.1"),
    "02_feature_extraction_vgg16.ipynb": ("2", "frozen VGG16 / ResNet-50 features: extract once, cache, linear probes, retrieval", "3.2, 4.2"),
    "03_domain_adaptation_dann.ipynb": ("3", "unsupervised domain adaptation: DANN with a gradient reversal layer, and MMD", "3.3, 4.3"),
    "04a_prototypical_networks.ipynb": ("4a", "few-shot learning with Prototypical Networks", "3.4, 4.4"),
    "04b_maml_and_reptile.ipynb": ("4b", "MAML (second and first order) and Reptile on `torch.func`", "3.4, 4.4"),
    "05_choosing_a_strategy.ipynb": ("5", "which technique when; results; FAQ of common mistakes; libraries; open problems", "closing themes"),
}


def chapters_markdown() -> str:
    times = notebook_times(RESULTS)
    slug = re.search(r'^Repository = "https://github.com/([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)

    def where(mode: str) -> str:
        t = times.get(mode)
        return f"{t['hardware']}, {t['date']}" if t else "not measured yet"

    lines = [
        f"| # | notebook | topic | article § | reduced mode ({where('reduced')}) | full mode ({where('full')}) | |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")):
        number, topic, section = CHAPTERS.get(name, ("?", "", ""))
        badge = (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
                 f"(https://colab.research.google.com/github/{slug}/blob/main/notebooks/{name})")
        lines.append(f"| {number} | [{name[:-6]}](notebooks/{name}) | {topic} | {section} | "
                     f"{run_time(times, 'reduced', name)} | {run_time(times, 'full', name)} | {badge} |")
    return "\n".join(lines)


def _replace(text: str, start: str, end: str, body: str) -> str:
    if start not in text or end not in text:
        raise SystemExit(f"README.md lacks the {start} / {end} markers.")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def section(readme: str, start: str, end: str) -> str:
    """The README's text between two markers (without them)."""
    if start not in readme or end not in readme:
        raise SystemExit(f"README.md lacks the {start} / {end} markers.")
    return readme.split(start, 1)[1].split(end, 1)[0].strip("\n")


def render_readme(readme: str) -> str:
    readme = _replace(readme, START, END, results_markdown(load_results(RESULTS)))
    readme = _replace(readme, CH_START, CH_END, chapters_markdown())
    return _replace(readme, FILES_START, FILES_END, files_markdown())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    path = ROOT / "README.md"
    current = path.read_text()
    new = render_readme(current)
    if args.check:
        if new != current:
            print("README.md's generated tables are out of date (results, chapters or files of full mode): "
                  "run `python tools/update_results.py` (or `make results`).")
            return 1
        return 0
    path.write_text(new)
    print("README.md tables updated (results, chapters, files of full mode)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
