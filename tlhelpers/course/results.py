"""Benchmark results: read the JSON files in ``benchmarks/results/`` and tabulate them.

The README's results table and the last notebook are built from these rows, never typed by hand.
Each benchmark writes its own JSON shape; one small reader per benchmark turns it into
:class:`ResultRow` objects, with the paper's number beside ours where a paper reports the setting.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Published numbers (top-1 %, test set) for the settings this course reproduces in full mode.
PAPER: dict[tuple[str, ...], tuple[float, str]] = {
    ("finetune", "full, discriminative LR"): (93.2, "TLlib ResNet-50 fine-tune, Oxford-IIIT Pet"),
    ("da", "mnist", "mnistm", "dann"): (76.7, "Ganin et al. 2016"),
    ("da", "mnist", "mnistm", "source_only"): (52.3, "Ganin et al. 2016"),
    ("da", "svhn", "mnist", "dann"): (73.9, "Ganin et al. 2016"),
    ("da", "svhn", "mnist", "source_only"): (54.9, "Ganin et al. 2016"),
    ("fewshot", "protonet", "5", "1"): (98.8, "Snell et al. 2017"),
    ("fewshot", "protonet", "5", "5"): (99.7, "Snell et al. 2017"),
    ("fewshot", "protonet", "20", "1"): (96.0, "Snell et al. 2017"),
    ("fewshot", "protonet", "20", "5"): (98.9, "Snell et al. 2017"),
    ("fewshot", "maml", "5", "1"): (98.7, "Finn et al. 2017"),
    ("fewshot", "maml", "5", "5"): (99.9, "Finn et al. 2017"),
    ("fewshot", "maml", "20", "1"): (95.8, "Finn et al. 2017"),
    ("fewshot", "maml", "20", "5"): (98.9, "Finn et al. 2017"),
}


@dataclass(frozen=True)
class ResultRow:
    """One number of one benchmark run.

    Attributes:
        chapter: the chapter it belongs to ("1".."5", or "engine").
        experiment: what was run, e.g. ``"DANN fontdigits→mnistm_style"``.
        metric: what ``ours`` measures, e.g. ``"target acc %"``.
        ours: our value, formatted (mean ± spread where there is one).
        paper: the paper's value for the same full-mode setting, or ``""``.
        data: the data set it ran on.
        mode: ``"reduced"`` or ``"full"``.
        hardware: the device it ran on.
        date: the run's date (UTC, ISO day).
        source: the JSON file name.
    """

    chapter: str
    experiment: str
    metric: str
    ours: str
    paper: str
    data: str
    mode: str
    hardware: str
    date: str
    source: str


def _hardware(raw: Any) -> str:
    if isinstance(raw, dict):
        return str(raw.get("gpu") or raw.get("device") or raw.get("cpu") or "?")
    return str(raw or "?")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _paper(key: tuple[str, ...], mode: str) -> str:
    """The paper's number, shown only beside a full-mode run (the paper's data and protocol)."""
    if key not in PAPER or mode != "full":
        return ""
    value, _ = PAPER[key]
    return f"{value:.1f}"


def _engine(d: dict[str, Any], src: str) -> list[ResultRow]:
    return [ResultRow("engine", "fit() vs a bare PyTorch loop", "time ratio (target ≤ 1.05)", f"{d['overhead_ratio']:.3f}",
                      "", "random tensors", d["mode"], _hardware(d.get("hardware") or d.get("device")), d["date"][:10], src)]


def _finetune(d: dict[str, Any], src: str) -> list[ResultRow]:
    data = "Oxford-IIIT Pet" if d["mode"] == "full" else "shapes (generated)"
    rows = []
    for r in d["results"]:
        rows.append(ResultRow(
            "1", f"({r['key']}) {r['name']} [{d['config'].get('arch', '?')}]", "test acc %", _pct(r["test_acc"]),
            _paper(("finetune", r["name"]), d["mode"]), data, d["mode"], _hardware(d.get("hardware")),
            str(d.get("date", ""))[:10], src))
    return rows


def _features(d: dict[str, Any], src: str) -> list[ResultRow]:
    hw, date = _hardware(d.get("hardware")), str(d.get("date", ""))[:10]
    data = "Oxford-IIIT Pet" if d["mode"] == "full" else "shapes (generated)"
    rows = [ResultRow("2", f"cached features vs re-extracting every epoch ({d['config'].get('epochs', '?')} epochs)",
                      "speed-up ×, cold / warm cache", f"{d['speedup']['cold']:.1f} / {d['speedup']['warm']:.1f}",
                      "", data, d["mode"], hw, date, src)]
    for p in d["probes"]:
        rows.append(ResultRow("2", f"linear probe on {p['model']} {p['layer']} ({p['dim']}-d)", "test acc %",
                              _pct(p["linear_probe_acc"]), "", data, d["mode"], hw, date, src))
    return rows


def _domain(d: dict[str, Any], src: str) -> list[ResultRow]:
    hw, date = _hardware(d.get("hardware")), str(d.get("date", ""))[:10]
    n = len(d.get("seeds", []))
    rows = []
    for method, acc in d["target_acc"].items():
        rows.append(ResultRow(
            "3", f"{method} {d['source']}→{d['target']}", f"target acc %, mean ± std over {n} seeds",
            f"{100 * acc['mean']:.1f} ± {100 * acc['std']:.1f}", _paper(("da", d["source"], d["target"], method), d["mode"]),
            f"{d['source']}→{d['target']}", d["mode"], hw, date, src))
    return rows


def _fewshot(d: dict[str, Any], src: str) -> list[ResultRow]:
    c = d["config"]
    mode = "reduced" if c.get("reduced") else "full"
    acc = d["accuracy"]
    data = d.get("data", {})
    name = data.get("name", c.get("dataset", "?"))
    if data.get("characters"):
        name = f"{name} ({data['characters']} characters)"
    rows = [ResultRow(
        "4", f"{c['method']} {c['way']}-way {c['shot']}-shot", f"acc % ± 95% CI, {acc.get('num_episodes', '?')} episodes",
        f"{100 * acc['mean']:.1f} ± {100 * acc['ci95']:.1f}", _paper(("fewshot", c["method"], str(c["way"]), str(c["shot"])), mode),
        name, mode, _hardware(d.get("hardware")), str(d.get("date", ""))[:10], src)]
    timing = d.get("maml_meta_gradient_timing")
    if timing and c["method"] == "maml" and str(c["shot"]) == "1":  # one timing row per data set
        rows.append(ResultRow(
            "4", f"MAML meta-batch of {timing.get('tasks', '?')} tasks: vmap vs per-task autograd loop", "time ratio",
            f"{timing['ratio_vmap_over_autograd_loop']:.2f}", "", name, mode, _hardware(d.get("hardware")),
            str(d.get("date", ""))[:10], src))
    return rows


def _fewshot_speed(d: dict[str, Any], src: str) -> list[ResultRow]:
    return [ResultRow("4", "Conv-4 training step (fused batch norm) vs a stock nn.BatchNorm2d Conv-4",
                      "time ratio (target ≤ 1.1)", f"{d['ratio_ours_over_reference']:.2f}", "",
                      "one 20-way episode, 320 images 28×28", d["mode"], _hardware(d.get("hardware")),
                      str(d.get("date", ""))[:10], src)]


def _shared_cpu(d: dict[str, Any], src: str) -> list[ResultRow]:
    """One row per case: the slowdown next to a busy process, PyTorch's default threads → the course's."""
    before, after = d["config"]["before"], d["config"]["after"]
    pol = d["policies"]
    rows = []
    for case, what in d["config"]["cases"].items():
        b, a = pol[before]["cases"][case], pol[after]["cases"][case]
        ours = "; ".join(f"next to a {busy} process {b[f'slowdown_{busy}']:.2f} → {a[f'slowdown_{busy}']:.2f}"
                         for busy in ("python", "torch"))
        if "median_busy_python_s" in b and "median_busy_python_s" in a:
            ours += f" (time next to python {b['median_busy_python_s'] / a['median_busy_python_s']:.1f}× shorter)"
        floor = (d.get("floor_slowdown") or {}).get(case)
        if floor:
            ours += f"; floor {floor:.2f} (1 CPU's speed / 2 CPUs', idle: no thread policy goes below it)"
        used = (pol[after].get("threads_per_condition") or [None])[0]
        after_threads = (f"{used[case]['idle']} idle, {used[case]['python']} next to a busy process"
                         if used and case in used else str(pol[after]["threads"]))
        rows.append(ResultRow(
            "engine", f"training on a shared CPU, {case} case ({what}): {pol[before]['threads']} thread(s) "
            f"(PyTorch default) → {after_threads} (configure_threads)",
            f"slowdown × (busy / idle time), median of {d['budget']['rounds_done']} rounds; goal ≤ {d['goal_slowdown']:g}",
            ours, "", "random tensors", d["mode"], _hardware(d.get("hardware")), str(d.get("date", ""))[:10], src))
    return rows


def _strategy_map(d: dict[str, Any], src: str) -> list[ResultRow]:
    """One row per (target, k): the best of the map's methods, and whether it won in every seed."""
    names = d["config"].get("method_names", {})
    n = len(d["config"].get("seeds", []))
    top = {(r["target"], r["method"], r["k"]): r for r in d["summary"]}
    rows = []
    for cell in d["best"]:
        r = top[cell["target"], cell["best"], cell["k"]]
        k = f"all {cell['k']} labelled images" if cell["k"] == d["config"].get("n_per_class") else \
            f"{cell['k']} labelled image{'' if cell['k'] == 1 else 's'}"
        verdict = "decisive" if cell["decisive"] else "not decisive"
        rows.append(ResultRow(
            "5", f"strategy map, {cell['target']} target, {k} per class: best of {len(d['config'].get('methods', []))} methods",
            f"test acc %, mean ± std over {n} seeds", f"{names.get(cell['best'], cell['best'])} {_pct(r['mean'])} ± "
            f"{_pct(r['std'])} ({verdict})", "", "shapes (generated)", d["mode"], _hardware(d.get("hardware")),
            str(d.get("date", ""))[:10], src))
    return rows


def _no_rows(d: dict[str, Any], src: str) -> list[ResultRow]:
    return []  # notebook run times go to the chapter table, see notebook_times()


READERS: dict[str, Callable[[dict[str, Any], str], list[ResultRow]]] = {
    "notebook_times": _no_rows,
    "engine_overhead": _engine,
    "finetune": _finetune,
    "features": _features,
    "domain_adaptation": _domain,
    "fewshot": _fewshot,
    "fewshot_speed": _fewshot_speed,
    "strategy_map": _strategy_map,
    "shared_cpu": _shared_cpu,
}


def _benchmark_name(d: dict[str, Any], path: Path) -> str:
    return str(d.get("benchmark") or path.stem.split("_")[0])


def load_results(folder: str | Path) -> list[ResultRow]:
    """Every row of every ``*.json`` in ``folder``, in chapter then file order.

    Raises:
        ValueError: for a JSON file no reader knows, naming the file and the known benchmarks.
    """
    rows: list[ResultRow] = []
    for path in sorted(Path(folder).glob("*.json")):
        d = json.loads(path.read_text())
        name = _benchmark_name(d, path)
        if name not in READERS:
            raise ValueError(f"{path.name}: unknown benchmark {name!r}; known: {', '.join(READERS)}.")
        rows += READERS[name](d, path.name)
    order = {"engine": "0"}
    return sorted(rows, key=lambda r: order.get(r.chapter, r.chapter))


def notebook_times(folder: str | Path) -> dict[str, dict[str, Any]]:
    """Measured notebook run times by budget, from ``notebook_times_<budget>.json``.

    Each budget (``"reduced"``, ``"laptop"``, ``"full"``) maps to ``{"hardware", "date", "cold",
    "weights", "accuracy", "seconds": {name: s}, "dates": {name: ISO day}}``: ``cold`` is True when
    each notebook ran from an empty data folder (``notebook_times.py --cold``); ``weights`` is
    ``"ImageNet"``, or ``"random (stand-in files at the real sizes)"`` for a run on stand-ins
    (``--stand-ins``), whose ``accuracy`` is ``"not measured"``; ``dates`` gives each notebook's own
    day (``--only`` re-times some notebooks), the run's ``date`` where the file has none.

    Args:
        folder: the folder of the JSON results.

    Returns:
        The times by budget; a budget never measured is absent.
    """
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(folder).glob("notebook_times_*.json")):
        d = json.loads(path.read_text())
        date = str(d.get("date", ""))[:10]
        weights = str(d.get("weights", "ImageNet"))
        out[d["mode"]] = {
            "hardware": d.get("hardware", "?"), "date": date, "cold": bool(d.get("cold", False)),
            "weights": weights, "accuracy": str(d.get("accuracy", "not measured" if weights.startswith("random") else "")),
            "seconds": d["seconds"],
            "dates": {name: str(d.get("dates", {}).get(name, date))[:10] for name in d["seconds"]},
        }
    return out


def stand_in_run(times: dict[str, dict[str, Any]], mode: str) -> bool:
    """True when ``mode``'s times were measured with random weights on stand-in files (accuracy not measured).

    Args:
        times: what :func:`notebook_times` returns.
        mode: ``"reduced"``, ``"laptop"`` or ``"full"``.
    """
    t = times.get(mode)
    return t is not None and str(t.get("weights", "ImageNet")).startswith("random")


def run_time(times: dict[str, dict[str, Any]], mode: str, notebook: str) -> str:
    """A notebook's measured run time at budget ``mode`` as text (``"36 s"``, ``"4 min"``), or ``"not measured yet"``.

    Args:
        times: what :func:`notebook_times` returns.
        mode: ``"reduced"``, ``"laptop"`` or ``"full"``.
        notebook: the notebook's file name, e.g. ``"01_finetuning_resnet50.ipynb"``.
    """
    secs = times.get(mode, {}).get("seconds", {}).get(notebook)
    if secs is None:
        return "not measured yet"
    return f"{secs:.0f} s" if secs < 120 else f"{secs / 60:.0f} min"


def results_markdown(rows: Iterable[ResultRow]) -> str:
    """A Markdown table of ``rows`` (what the README shows)."""
    header = "| ch. | experiment | data | metric | ours | paper | mode | hardware | date |"
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.chapter} | {r.experiment} | {r.data} | {r.metric} | {r.ours} | {r.paper or '—'} | "
                     f"{r.mode} | {r.hardware} | {r.date} |")
    return "\n".join(lines)
