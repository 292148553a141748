import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tlhelpers.course.results import load_results, results_markdown

ROOT = Path(__file__).resolve().parents[1]


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_readme_table_matches_committed_json():
    result = subprocess.run([sys.executable, "tools/update_results.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rows_carry_paper_numbers_only_as_such(tmp_path):
    run = {"benchmark": "domain_adaptation", "source": "mnist", "target": "mnistm", "mode": "full", "seeds": [0, 1, 2],
           "target_acc": {"dann": {"mean": 0.8, "std": 0.01}, "mmd": {"mean": 0.7, "std": 0.02}},
           "hardware": {"gpu": "Tesla T4"}, "date": "2026-11-29T00:00:00"}
    (tmp_path / "da.json").write_text(json.dumps(run))
    rows = load_results(tmp_path)
    assert [(r.experiment, r.ours, r.paper) for r in rows] == [
        ("dann mnist→mnistm", "80.0 ± 1.0", "76.7"), ("mmd mnist→mnistm", "70.0 ± 2.0", "")]
    assert rows[0].hardware == "Tesla T4" and rows[0].mode == "full"
    table = results_markdown(rows)
    assert table.count("\n") == 3 and "| 76.7 |" in table


def test_paper_numbers_only_beside_full_mode_runs(tmp_path):
    run = {"benchmark": "domain_adaptation", "source": "mnist", "target": "mnistm", "mode": "reduced", "seeds": [0],
           "target_acc": {"dann": {"mean": 0.6, "std": 0.0}}, "hardware": {"cpu": "x86_64"}, "date": "2026-11-29"}
    (tmp_path / "da.json").write_text(json.dumps(run))
    assert [r.paper for r in load_results(tmp_path)] == [""]  # another protocol: no paper number beside it


def test_paper_keys_name_real_strategies_and_methods():
    from tlhelpers.course.domain_experiment import METHODS
    from tlhelpers.course.results import PAPER
    from tlhelpers.transfer.finetuning import STRATEGIES

    names = {s.name for s in STRATEGIES}
    for key in PAPER:
        if key[0] == "finetune":
            assert key[1] in names, f"PAPER key {key} names no strategy; strategies: {sorted(names)}"
        if key[0] == "da":
            assert key[3] in METHODS, key


def test_unknown_benchmark_is_a_clear_error(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"benchmark": "mystery"}))
    with pytest.raises(ValueError, match="unknown benchmark 'mystery'"):
        load_results(tmp_path)


def test_failed_benchmark_keeps_old_numbers(tmp_path, monkeypatch):
    runner = _tool("run_benchmarks")
    results = tmp_path / "results"
    results.mkdir()
    (results / "old.json").write_text('{"v": 1}')
    good = tmp_path / "good.py"
    good.write_text(f"open({str(results / 'new.json')!r}, 'w').write('{{}}')\n")
    bad = tmp_path / "bad.py"
    bad.write_text(f"open({str(results / 'old.json')!r}, 'w').write('half')\nraise SystemExit(1)\n")
    monkeypatch.setattr(runner, "plan", lambda *a: [runner.Job((str(bad),)), runner.Job((str(good),))])
    assert runner.main(["--results-dir", str(results)]) == 1  # the failure is reported...
    assert (results / "old.json").read_text() == '{"v": 1}'  # ...its old numbers are restored...
    assert (results / "new.json").exists()  # ...and the other benchmarks still ran


def test_every_committed_result_file_has_a_reader():
    rows = load_results(ROOT / "benchmarks" / "results")
    sources = {r.source for r in rows}
    for path in (ROOT / "benchmarks" / "results").glob("*.json"):
        if not path.name.startswith("notebook_times"):
            assert path.name in sources, f"{path.name} gives no row in the README's results table"


def test_strategy_map_reader_gives_one_row_per_target_and_k(tmp_path):
    from tlhelpers.course.strategy_map import best_methods, map_summary

    records = [{"target": t, "method": m, "k": k, "seed": s, "test_acc": acc + 0.01 * s}
               for t in ("near", "far") for k in (1, 100)
               for m, acc in (("prototype", 0.6), ("full", 0.5 if k == 1 else 0.59))
               for s in range(3)]
    summary = map_summary(records)
    run = {"benchmark": "strategy_map", "mode": "reduced", "summary": summary, "best": best_methods(summary), "records": records,
           "config": {"seeds": [0, 1, 2], "n_per_class": 100, "methods": ["prototype", "full"],
                      "method_names": {"prototype": "nearest prototype (frozen)", "full": "full, discriminative LR"}},
           "hardware": {"cpu": "x86_64"}, "date": "2026-11-29T12:00:00"}
    (tmp_path / "strategy_map_reduced.json").write_text(json.dumps(run))
    rows = load_results(tmp_path)
    assert len(rows) == 4 and {r.chapter for r in rows} == {"5"}
    assert [r.ours for r in rows if "near target, 1 labelled image per" in r.experiment] == ["nearest prototype (frozen) 61.0 ± 1.0 (decisive)"]
    assert [r.ours for r in rows if "far target, all 100 labelled images per" in r.experiment] == ["nearest prototype (frozen) 61.0 ± 1.0 (not decisive)"]
    assert all(r.paper == "" and r.mode == "reduced" and r.source == "strategy_map_reduced.json" for r in rows)


def test_shared_cpu_reader_gives_before_and_after_per_case(tmp_path):
    def case(idle, py, to):
        return {"median_idle_s": idle, "slowdown_python": py, "slowdown_torch": to}

    run = {"benchmark": "shared_cpu", "mode": "reduced", "hardware": "x86_64", "date": "2026-11-29T16:00:00",
           "config": {"cases": {"minimal": "40 Conv-4 steps", "chapter1": "8 mini_resnet steps"}, "before": "torch", "after": "auto"},
           "budget": {"rounds_done": 3}, "goal_slowdown": 1.5,
           "policies": {"torch": {"threads": 2, "cases": {"minimal": case(0.4, 3.4, 4.0), "chapter1": case(1.0, 2.5, 3.0)}},
                        "auto": {"threads": 1, "cases": {"minimal": case(0.5, 1.1, 1.6), "chapter1": case(1.6, 1.2, 1.7)}}}}
    (tmp_path / "shared_cpu_reduced.json").write_text(json.dumps(run))
    rows = load_results(tmp_path)
    assert len(rows) == 2 and {r.chapter for r in rows} == {"engine"}
    minimal = next(r for r in rows if "minimal case" in r.experiment)
    assert minimal.ours == "next to a python process 3.40 → 1.10; next to a torch process 4.00 → 1.60"
    assert "2 thread(s) (PyTorch default) → 1" in minimal.experiment and "goal ≤ 1.5" in minimal.metric
    # a load-aware run records the threads of each condition and the busy times
    run["policies"]["auto"]["threads_per_condition"] = [{"minimal": {"idle": 2, "python": 1, "torch": 1},
                                                         "chapter1": {"idle": 2, "python": 1, "torch": 1}}]
    for policy, busy in (("torch", 2.0), ("auto", 0.5)):
        run["policies"][policy]["cases"]["minimal"]["median_busy_python_s"] = busy
    (tmp_path / "shared_cpu_reduced.json").write_text(json.dumps(run))
    minimal = next(r for r in load_results(tmp_path) if "minimal case" in r.experiment)
    assert "→ 2 idle, 1 next to a busy process" in minimal.experiment
    assert minimal.ours.endswith("(time next to python 4.0× shorter)")


def test_shared_cpu_reader_gives_the_floor_no_policy_can_beat(tmp_path):
    def case(idle, py, to):
        return {"median_idle_s": idle, "slowdown_python": py, "slowdown_torch": to}

    run = {"benchmark": "shared_cpu", "mode": "reduced", "hardware": "x86_64", "date": "2026-11-29T16:00:00",
           "config": {"cases": {"minimal": "40 Conv-4 steps"}, "before": "torch", "after": "auto"},
           "budget": {"rounds_done": 3}, "goal_slowdown": 1.5, "floor_slowdown": {"minimal": 1.627},
           "policies": {"torch": {"threads": 2, "cases": {"minimal": case(0.4, 3.4, 4.0)}},
                        "auto": {"threads": 2, "cases": {"minimal": case(0.5, 1.54, 1.6)}}}}
    (tmp_path / "shared_cpu_reduced.json").write_text(json.dumps(run))
    (row,) = load_results(tmp_path)
    assert "floor 1.63 (1 CPU's speed / 2 CPUs', idle" in row.ours


def _laptop_times(folder, **extra):
    run = {"benchmark": "notebook_times", "mode": "laptop", "cold": False, "hardware": "arm64 CPU, 8 cores",
           "date": "2026-12-05T10:00:00+00:00", "torch": "2.5",
           "seconds": {"01_finetuning_resnet50.ipynb": 540.0, "00_introduction.ipynb": 30.0},
           "dates": {"01_finetuning_resnet50.ipynb": "2026-12-01T09:00:00+00:00"}, **extra}
    (folder / "notebook_times_laptop.json").write_text(json.dumps(run))


def test_notebook_times_reads_a_laptop_run_on_stand_ins(tmp_path):
    from tlhelpers.course.results import notebook_times, run_time, stand_in_run

    _laptop_times(tmp_path, weights="random (stand-in files at the real sizes)", accuracy="not measured")
    times = notebook_times(tmp_path)
    assert set(times) == {"laptop"} and stand_in_run(times, "laptop") and not stand_in_run(times, "full")
    laptop = times["laptop"]
    assert laptop["accuracy"] == "not measured" and laptop["hardware"] == "arm64 CPU, 8 cores"
    # each notebook's own day (--only), the run's day where the file gives none
    assert laptop["dates"] == {"01_finetuning_resnet50.ipynb": "2026-12-01", "00_introduction.ipynb": "2026-12-05"}
    assert run_time(times, "laptop", "01_finetuning_resnet50.ipynb") == "9 min"
    assert run_time(times, "laptop", "00_introduction.ipynb") == "30 s"
    assert run_time(times, "laptop", "02_feature_extraction_vgg16.ipynb") == "not measured yet"
    _laptop_times(tmp_path)  # an older file, or a run on the real files: ImageNet weights
    assert not stand_in_run(notebook_times(tmp_path), "laptop")


def test_header_gives_the_laptop_budget_between_reduced_and_full(tmp_path):
    from tlhelpers.course.results import notebook_times

    sync = _tool("sync_notebooks")
    name = "01_finetuning_resnet50.ipynb"
    empty = sync.run_time_paragraph(name, {})
    assert ("reduced mode (`TLH_BUDGET=reduced`, offline, CPU): not measured yet; "
            "laptop budget (real data and weights on a CPU): not measured yet; full mode") in empty
    assert "TLH_REDUCED" not in empty
    _laptop_times(tmp_path, weights="random (stand-in files at the real sizes)", accuracy="not measured")
    paragraph = sync.run_time_paragraph(name, notebook_times(tmp_path))
    assert ("; laptop budget (real data and weights on a CPU; timed here with random weights on stand-in files of "
            "the real sizes): 9 min (arm64 CPU, 8 cores, 2026-12-01, with the caches of the notebooks before it); "
            "full mode (real data and weights, GPU): not measured yet.") in paragraph


def test_chapter_table_has_a_laptop_column(tmp_path, monkeypatch):
    update = _tool("update_results")
    monkeypatch.setattr(update, "RESULTS", tmp_path)
    lines = update.chapters_markdown().splitlines()
    assert "| laptop budget (not measured yet; accuracy not measured) |" in lines[0]
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    _laptop_times(tmp_path, weights="random (stand-in files at the real sizes)", accuracy="not measured")
    lines = update.chapters_markdown().splitlines()
    header = [cell.strip() for cell in lines[0].split("|")]
    column = header.index("laptop budget (arm64 CPU, 8 cores, 2026-12-05; random weights on stand-in files of the "
                          "real sizes; accuracy not measured)")
    assert header[column - 1].startswith("reduced mode") and header[column + 1].startswith("full mode")
    rows = {line.split("](notebooks/")[1].split(")")[0]: [c.strip() for c in line.split("|")] for line in lines[2:]}
    assert rows["01_finetuning_resnet50.ipynb"][column] == "9 min"
    assert rows["02_feature_extraction_vgg16.ipynb"][column] == "not measured yet"
    _laptop_times(tmp_path)  # measured on the real files with ImageNet weights: no note
    assert "| laptop budget (arm64 CPU, 8 cores, 2026-12-05) |" in update.chapters_markdown()
