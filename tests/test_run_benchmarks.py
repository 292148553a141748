"""tools/run_benchmarks.py: full mode offline on tiny files, skips with a reason, budgets passed on.

The end-to-end test runs the real benchmark scripts in smoke mode (``TLH_SMOKE=1``) on tiny files
in the real layouts (``tests/fakes.py``), with the network disabled in every subprocess by a
``tools/offline_guard`` (a ``sitecustomize``) that refuses and logs any connection off this
machine or to the dead proxy.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import write_mnist, write_omniglot, write_pets, write_usps

ROOT = Path(__file__).resolve().parents[1]
PROXY = "http://127.0.0.1:9"  # nothing listens there; tools/offline_guard refuses and logs it

def _runner():
    spec = importlib.util.spec_from_file_location("run_benchmarks", ROOT / "tools" / "run_benchmarks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _offline_env(tmp_path: Path, torch_home: Path) -> dict[str, str]:
    return {
        **os.environ, "PYTHONPATH": str(ROOT / "tools" / "offline_guard"),
        "TLH_OFFLINE_GUARD_LOG": str(tmp_path / "network.log"),
        "HTTP_PROXY": PROXY, "HTTPS_PROXY": PROXY, "http_proxy": PROXY, "https_proxy": PROXY, "NO_PROXY": "",
        "TORCH_HOME": str(torch_home), "TLH_SMOKE": "1", "TLH_DEVICE": "cpu",
    }


def _json_snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.glob("*.json")}


def test_full_plan_gives_every_benchmark_the_data_root_budget_and_results_dir(tmp_path):
    runner = _runner()
    jobs = runner.plan("full", "/d", max_minutes=7.5, results_dir=tmp_path)
    assert {Path(j.args[0]).stem for j in jobs} == {
        "engine_overhead", "finetune", "features", "domain_adaptation", "fewshot", "notebook_times"}
    for job in jobs:
        pairs = list(zip(job.args, job.args[1:]))
        assert ("--max-minutes", "7.5") in pairs and ("--results-dir", str(tmp_path)) in pairs
        assert (("--data-root", "/d") in pairs) == ("engine_overhead" not in job.args[0])
    fewshot = [j for j in jobs if "fewshot" in j.args[0]]
    assert len(fewshot) == 12 and all(j.datasets == ("omniglot",) for j in fewshot)  # protonet, maml, protomaml x 4
    da = {j.datasets for j in jobs if "domain_adaptation" in j.args[0]}
    assert da == {("mnist", "mnistm"), ("svhn", "mnist"), ("mnist", "usps")}
    # an extracted alphabet/character folder replaces the data root for the few-shot runs only
    folder = runner.plan("full", "/d", omniglot_folder="/omni")
    for job in (j for j in folder if "fewshot" in j.args[0]):
        assert "--data-root" not in job.args and ("--omniglot-folder", "/omni") in zip(job.args, job.args[1:])
        assert job.datasets == ()


def test_reduced_plan_runs_the_shared_cpu_benchmark_once(tmp_path):
    jobs = _runner().plan("reduced", results_dir=tmp_path)
    shared = [j for j in jobs if Path(j.args[0]).name == "shared_cpu.py"]
    assert len(shared) == 1 and "--reduced" in shared[0].args and str(tmp_path) in shared[0].args
    assert (ROOT / shared[0].args[0]).is_file()


def test_skip_and_failure_keep_old_results_and_only_failures_fail(tmp_path, monkeypatch, capsys):
    runner = _runner()
    results = tmp_path / "results"
    results.mkdir()
    (results / "old.json").write_text('{"v": 1}')
    skip = tmp_path / "skip.py"
    skip.write_text(f"open({str(results / 'old.json')!r}, 'w').write('half')\n"
                    "print('skipped: dataset files are missing; put them in /x')\nraise SystemExit(3)\n")
    good = tmp_path / "good.py"
    good.write_text(f"open({str(results / 'new.json')!r}, 'w').write('{{}}')\n")
    monkeypatch.setattr(runner, "plan", lambda *a: [runner.Job((str(skip),)), runner.Job((str(good),))])
    assert runner.main(["--results-dir", str(results)]) == 0  # a skip is not a failure
    assert (results / "old.json").read_text() == '{"v": 1}' and (results / "new.json").exists()
    out = capsys.readouterr().out
    assert "summary: 1 ran, 1 skipped, 0 failed" in out
    assert f"{skip}: dataset files are missing; put them in /x" in out


@pytest.fixture
def some_files(tmp_path):
    """MNIST, USPS, Omniglot and Pets on disk; no MNIST-M, no SVHN, no weights at all."""
    data = tmp_path / "data"
    write_mnist(data)
    write_usps(data)
    write_omniglot(data)
    write_pets(data)
    return data, tmp_path / "torch"


def test_full_mode_offline_runs_what_is_present_and_skips_the_rest(tmp_path, some_files):
    data, torch_home = some_files
    results = tmp_path / "results"
    committed = _json_snapshot(ROOT / "benchmarks" / "results")
    only = ["engine_overhead", "finetune", "domain_adaptation", "protonet --way 5 --shot 1"]
    proc = subprocess.run(
        [sys.executable, "tools/run_benchmarks.py", "--mode", "full", "--data-root", str(data), "--only", *only,
         "--results-dir", str(results), "--max-minutes", "5"],
        cwd=ROOT, env=_offline_env(tmp_path, torch_home), capture_output=True, text=True, timeout=600,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr[-3000:]
    assert not (tmp_path / "network.log").exists(), (tmp_path / "network.log").read_text()
    assert sorted(p.name for p in results.glob("*.json")) == [
        "domain_adaptation_mnist_usps_full.json", "engine_overhead_full.json", "fewshot_protonet_omniglot_5w1s_full.json"]
    assert "summary: 3 ran, 3 skipped, 0 failed" in out
    skipped = out.split("skipped:\n", 1)[1].split("failed:")[0].strip().splitlines()
    assert len(skipped) == 3  # one line each, naming what is missing
    reasons = {line.split(":", 1)[0].split()[0].split("/")[1]: line for line in skipped}
    assert "resnet50-11ad3fa6.pth" in reasons["finetune.py"] and "oxford-iiit-pet" not in reasons["finetune.py"]
    assert "mnist_m.tar.gz" in next(s for s in skipped if "--target mnistm" in s)
    assert "svhn/train_32x32.mat" in next(s for s in skipped if "--source svhn" in s)
    # the budget reached every training loop, and each run says how far it got
    da = json.loads((results / "domain_adaptation_mnist_usps_full.json").read_text())
    budget = da["runs"]["dann"][0]["budget"]
    assert budget["max_minutes"] == 5 and budget["epochs_done"] == budget["epochs_planned"] == 1
    assert not budget["stopped_early"] and da["config"]["num_epochs"] == 1  # smoke-run count
    fewshot = json.loads((results / "fewshot_protonet_omniglot_5w1s_full.json").read_text())
    assert fewshot["data"]["name"] == "omniglot" and fewshot["data"]["characters"] == 30
    assert fewshot["training"]["budget"]["iterations_done"] == fewshot["training"]["budget"]["iterations_planned"] == 2
    assert _json_snapshot(ROOT / "benchmarks" / "results") == committed


def test_benchmark_skips_itself_when_a_download_fails(tmp_path):
    """With --download the runner does not check files; the benchmark's own skip (exit 3) is reported."""
    proc = subprocess.run(
        [sys.executable, "tools/run_benchmarks.py", "--mode", "full", "--data-root", str(tmp_path / "empty"),
         "--download", "--only", "svhn", "--results-dir", str(tmp_path / "results")],
        cwd=ROOT, env=_offline_env(tmp_path, tmp_path / "torch"), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "summary: 0 ran, 1 skipped, 0 failed" in proc.stdout
    reason = proc.stdout.split("skipped:\n", 1)[1].strip()
    assert len(reason.splitlines()) == 1 and "dataset 'svhn' is not available" in reason
    assert (tmp_path / "network.log").exists()  # it did try, and the guard refused
