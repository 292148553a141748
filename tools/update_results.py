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

from tlhelpers.course.results import (  # noqa: E402
    load_results,
    notebook_times,
    results_markdown,
    run_time,
    stand_in_run,
)
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
    "04b_maml_and_reptile.ipynb": ("4b", "MAML (second and first order), ProtoMAML and Reptile on `torch.func`", "3.4, 4.4"),
    "05_choosing_a_strategy.ipynb": ("5", "which technique when; results; FAQ of common mistakes; libraries; open problems", "closing themes"),
}


# the same table in README.zh.md: topics in Chinese, links to the Chinese twins in notebooks/zh/
CHAPTERS_ZH = {
    "00_introduction.ipynb": "什么是迁移学习；环境检查；一个 CPU 上的小实验：预训练带来的好处",
    "01_finetuning_resnet50.ipynb": "微调 ResNet-50：只训分类头、最后一个阶段、分层学习率全量微调、从零训练",
    "02_feature_extraction_vgg16.ipynb": "冻结的 VGG16 / ResNet-50 特征：提取一次并缓存、线性探针、图像检索",
    "03_domain_adaptation_dann.ipynb": "无监督域适应：带梯度反转层的 DANN，以及 MMD",
    "04a_prototypical_networks.ipynb": "用原型网络做小样本学习",
    "04b_maml_and_reptile.ipynb": "基于 `torch.func` 的 MAML（二阶与一阶）、ProtoMAML 和 Reptile",
    "05_choosing_a_strategy.ipynb": "何时用哪种方法；结果汇总；常见错误；相关库；开放问题",
}


def chapters_markdown(lang: str = "en") -> str:
    """The README's chapter table (``lang="zh"``: README.zh.md's, same numbers, Chinese text)."""
    zh = lang == "zh"
    times = notebook_times(RESULTS)
    slug = re.search(r'^Repository = "https://github.com/([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)

    def where(mode: str) -> str:
        t = times.get(mode)
        return f"{t['hardware']}, {t['date']}" if t else ("尚未测量" if zh else "not measured yet")

    laptop = where("laptop")
    if stand_in_run(times, "laptop"):
        laptop += "；随机权重，真实大小的替身文件" if zh else "; random weights on stand-in files of the real sizes"
    if times.get("laptop") is None or stand_in_run(times, "laptop"):  # until a run on the real files with ImageNet weights
        laptop += "；准确率未测" if zh else "; accuracy not measured"
    if zh:
        header = (f"| # | 笔记本 | 主题 | 原文章节 | 精简 reduced（{where('reduced')}） | 笔记本电脑 laptop（{laptop}） "
                  f"| 完整 full（{where('full')}） | |")
    else:
        header = (f"| # | notebook | topic | article § | reduced mode ({where('reduced')}) | laptop budget ({laptop}) "
                  f"| full mode ({where('full')}) | |")
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    folder = "notebooks/zh" if zh else "notebooks"
    for name in sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")):
        number, topic, section = CHAPTERS.get(name, ("?", "", ""))
        if zh:
            topic, section = CHAPTERS_ZH.get(name, topic), section.replace("closing themes", "结语")
        badge = (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
                 f"(https://colab.research.google.com/github/{slug}/blob/main/{folder}/{name})")
        times_row = " | ".join(_zh_time(run_time(times, b, name)) if zh else run_time(times, b, name)
                               for b in ("reduced", "laptop", "full"))
        lines.append(f"| {number} | [{name[:-6]}]({folder}/{name}) | {topic} | {section} | {times_row} | {badge} |")
    return "\n".join(lines)


def _zh_time(text: str) -> str:
    return text.replace("not measured yet", "尚未测量")


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


def render_readme(readme: str, lang: str = "en") -> str:
    """``readme`` with its generated tables replaced (the results and files tables are the same in both languages)."""
    readme = _replace(readme, START, END, results_markdown(load_results(RESULTS)))
    readme = _replace(readme, CH_START, CH_END, chapters_markdown(lang))
    return _replace(readme, FILES_START, FILES_END, files_markdown())


READMES = {"README.md": "en", "README.zh.md": "zh"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    stale = []
    for name, lang in READMES.items():
        path = ROOT / name
        if not path.exists():
            continue
        current = path.read_text()
        new = render_readme(current, lang)
        if new == current:
            continue
        if args.check:
            stale.append(name)
        else:
            path.write_text(new)
            print(f"{name} tables updated (results, chapters, files of full mode)")
    if stale:
        print(f"{', '.join(stale)}: the generated tables are out of date (results, chapters or files of full mode): "
              "run `python tools/update_results.py` (or `make results`).")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
