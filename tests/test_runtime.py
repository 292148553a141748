import importlib
import os

import pytest
import torch

from tlhelpers.core import runtime


@pytest.fixture(autouse=True)
def threads_restored(monkeypatch):
    """describe() and configure_threads() set torch's threads: each test gets them back as they were."""
    monkeypatch.delenv("TLH_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("raw, expected", [("1", True), ("true", True), ("0", False), ("off", False)])
def test_is_reduced_reads_env(monkeypatch, raw, expected):
    monkeypatch.setenv("TLH_REDUCED", raw)
    assert runtime.is_reduced() is expected
    assert runtime.mode_name() == ("reduced" if expected else "full")


def test_unknown_mode_value_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("TLH_REDUCED", "maybe")
    with pytest.raises(ValueError, match="TLH_REDUCED=1"):
        runtime.is_reduced()


def test_data_root_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TLH_DATA", str(tmp_path / "d"))
    root = runtime.data_root()
    assert root == tmp_path / "d" and root.is_dir()


def test_unwritable_data_root_names_the_fix(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("TLH_DATA", str(blocker / "sub"))
    with pytest.raises(PermissionError, match="TLH_DATA"):
        runtime.data_root()


def test_device_choice(monkeypatch):
    monkeypatch.delenv("TLH_DEVICE", raising=False)
    assert runtime.get_device("cpu") == torch.device("cpu")
    assert runtime.get_device().type in {"cuda", "mps", "cpu"}
    monkeypatch.setenv("TLH_DEVICE", "cpu")
    assert runtime.get_device() == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        runtime.get_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            runtime.get_device("cuda")


def test_seed_everything_reproduces():
    runtime.seed_everything(3)
    a = torch.randn(5)
    runtime.seed_everything(3)
    assert torch.equal(a, torch.randn(5))


def test_autocast_is_a_noop_on_cpu():
    assert runtime.amp_dtype("cpu") is None
    assert runtime.make_grad_scaler("cpu") is None
    x = torch.randn(4, 4)
    with runtime.autocast("cpu"):
        y = x @ x
    assert y.dtype == torch.float32


def test_loader_kwargs(monkeypatch):
    monkeypatch.setenv("TLH_REDUCED", "1")
    kw = runtime.loader_kwargs("cpu")
    assert kw == {"num_workers": 0, "pin_memory": False}
    monkeypatch.setenv("TLH_REDUCED", "0")
    kw = runtime.loader_kwargs("cpu")
    assert 1 <= kw["num_workers"] <= 2 and kw["persistent_workers"] is True


def test_import_has_no_side_effects(monkeypatch):
    called = []
    monkeypatch.setattr(torch, "manual_seed", lambda *a: called.append(a))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: called.append("probe") or False)
    importlib.reload(runtime)
    assert called == []


def test_describe_lists_versions(monkeypatch, tmp_path):
    monkeypatch.setenv("TLH_DATA", str(tmp_path))
    info = runtime.describe()
    assert {"budget", "device", "torch", "torchvision", "python"} <= set(info)


def test_smoke_counts_and_claims(monkeypatch, capsys):
    monkeypatch.delenv("TLH_SMOKE", raising=False)
    assert not runtime.is_smoke()
    assert runtime.count(20, smoke=1) == 20 and runtime.count(None, smoke=8) is None
    runtime.claim(True, "holds")
    with pytest.raises(AssertionError, match="DANN beats source-only"):
        runtime.claim(False, "DANN beats source-only")
    monkeypatch.setenv("TLH_SMOKE", "1")
    assert runtime.is_smoke() and "smoke" in runtime.describe()["budget"]
    assert runtime.count(20, smoke=1) == 1 and runtime.count(None, smoke=8) == 8
    runtime.claim(False, "DANN beats source-only")  # reported, not raised: tiny data shows no lesson
    assert "not checked: does not hold] DANN beats source-only" in capsys.readouterr().out
    monkeypatch.setenv("TLH_SMOKE", "sometimes")
    with pytest.raises(ValueError, match="TLH_SMOKE=1"):
        runtime.is_smoke()


def _affinity():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def test_auto_threads_leave_busy_cpus_to_others_and_are_idempotent(threads_restored, monkeypatch):
    quota = runtime.cpu_quota()
    for busy, expected in ((0.0, quota), (0.2, quota), (1.0, max(1, quota - 1)), (float(quota + 3), 1)):
        monkeypatch.setattr(runtime, "busy_cpus", lambda b=busy: b)
        first = runtime.configure_threads()
        assert first == expected == torch.get_num_threads(), (busy, first)
        assert runtime.configure_threads() == first  # same load: calling again changes nothing
    monkeypatch.undo()
    assert 1 <= runtime.configure_threads() <= _affinity()


def test_busy_cpus_counts_other_programs_work_between_two_reads(tmp_path, monkeypatch):
    import time

    stat = tmp_path / "stat"
    cpus = sorted(os.sched_getaffinity(0))[:2] if hasattr(os, "sched_getaffinity") else [0]
    # user nice system idle iowait irq softirq steal: one CPU fully busy, another idle, over 100 ticks
    stat.write_text("cpu 0 0 0 0 0 0 0 0\n" + "".join(f"cpu{c} 100 0 0 100 0 0 0 0\n" for c in cpus))
    after = "cpu 0 0 0 0 0 0 0 0\n" + "".join(
        f"cpu{c} {200 if i == 0 else 100} 0 0 {100 if i == 0 else 200} 0 0 0 0\n" for i, c in enumerate(cpus))
    monkeypatch.setattr(time, "sleep", lambda s: stat.write_text(after))
    assert runtime.busy_cpus(stat=stat) == pytest.approx(1.0)
    assert runtime.busy_cpus(stat=tmp_path / "absent") == 0.0


def test_explicit_settings_win(threads_restored, monkeypatch):
    assert runtime.configure_threads(1) == 1 == torch.get_num_threads()
    monkeypatch.setenv("TLH_THREADS", "1")
    assert runtime.configure_threads(policy=2) == 1  # the user's TLH_THREADS wins over the policy
    monkeypatch.delenv("TLH_THREADS")
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert runtime.configure_threads("auto") == 1  # OMP_NUM_THREADS: torch's own choice is left alone
    assert "OMP_NUM_THREADS" in runtime.describe()["threads"]
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv("TLH_THREADS", "torch")
    assert runtime.configure_threads() == torch.get_num_threads() == 1  # "torch" keeps what torch has


@pytest.mark.parametrize("bad", ["0", "many", "-2"])
def test_bad_thread_setting_is_a_clear_error(threads_restored, monkeypatch, bad):
    monkeypatch.setenv("TLH_THREADS", bad)
    with pytest.raises(ValueError, match="TLH_THREADS"):
        runtime.configure_threads()
    monkeypatch.delenv("TLH_THREADS")
    with pytest.raises(ValueError, match="policy"):
        runtime.configure_threads(0)


@pytest.mark.parametrize("files, expected", [
    ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 CPUs count as 2
    ({"cpu.max": "50000 100000\n"}, 1),
    ({"cpu.max": "max 100000\n"}, None),  # no limit: the affinity
    ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),  # cgroup v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
])
def test_cpu_quota_reads_cgroup_limits(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert runtime.cpu_quota(tmp_path) == min(_affinity(), expected or _affinity())
    assert runtime.cpu_quota(tmp_path / "absent") == _affinity()


def test_describe_reports_the_threads_in_one_line(threads_restored):
    line = runtime.describe()["threads"]
    assert line.startswith(f"{torch.get_num_threads()} of {runtime.cpu_quota()} CPU(s)") and "\n" not in line


@pytest.fixture
def auto_budget(monkeypatch, tmp_path):
    """No budget setting, no GPU, no network, an empty data folder: what auto selection sees on a bare laptop offline."""
    for name in ("TLH_BUDGET", "TLH_REDUCED", "TLH_SMOKE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TLH_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "network_reachable", lambda: False)
    return tmp_path / "data"


def test_budget_auto_gpu_is_full(auto_budget, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(runtime, "network_reachable", lambda: pytest.fail("a GPU decides without asking the network"))
    assert runtime.select_budget() == runtime.BudgetChoice("full", "auto: a CUDA GPU")
    assert not runtime.is_reduced() and runtime.mode_name() == "full"


def test_budget_auto_cpu_with_network_is_laptop(auto_budget, monkeypatch):
    monkeypatch.setattr(runtime, "network_reachable", lambda: True)
    choice = runtime.select_budget()
    assert choice.name == "laptop" and "answers" in choice.reason
    assert not runtime.is_reduced()


def test_budget_auto_offline_with_a_chapters_files_is_laptop(auto_budget):
    from fakes import write_mnist, write_mnistm

    assert runtime.budget() == "reduced"  # nothing there yet
    write_mnist(auto_budget)
    assert runtime.budget() == "reduced"  # chapter 3 needs MNIST-M as well
    write_mnistm(auto_budget)
    choice = runtime.select_budget()
    assert choice.name == "laptop" and "present" in choice.reason


def test_budget_auto_offline_with_nothing_is_reduced(auto_budget):
    choice = runtime.select_budget()
    assert choice.name == "reduced" and "offline" in choice.reason
    assert runtime.is_reduced() and runtime.loader_kwargs("cpu")["num_workers"] == 0


@pytest.mark.parametrize("name", runtime.BUDGETS)
def test_budget_override_wins_over_what_the_machine_has(auto_budget, monkeypatch, name):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("TLH_REDUCED", "1")  # the older switch loses to TLH_BUDGET
    monkeypatch.setenv("TLH_BUDGET", name.upper())
    assert runtime.select_budget() == runtime.BudgetChoice(name, "set by TLH_BUDGET")
    assert runtime.is_reduced() == (name == "reduced")


@pytest.mark.parametrize(("raw", "name"), [("1", "reduced"), ("0", "full"), ("yes", "reduced")])
def test_budget_older_switch_still_works(auto_budget, monkeypatch, raw, name):
    monkeypatch.setenv("TLH_BUDGET", "auto")
    monkeypatch.setenv("TLH_REDUCED", raw)
    assert runtime.select_budget() == runtime.BudgetChoice(name, "set by TLH_REDUCED")


def test_budget_bad_value_is_one_line_naming_the_choices(auto_budget, monkeypatch):
    monkeypatch.setenv("TLH_BUDGET", "tiny")
    with pytest.raises(ValueError, match="TLH_BUDGET='tiny'.*reduced, laptop or full") as err:
        runtime.budget()
    assert "\n" not in str(err.value)


def test_count_picks_the_size_of_the_budget(auto_budget, monkeypatch):
    monkeypatch.setenv("TLH_BUDGET", "full")
    assert runtime.count(20, smoke=1, laptop=3) == 20
    monkeypatch.setenv("TLH_BUDGET", "laptop")
    assert runtime.count(20, smoke=1, laptop=3) == 3
    assert runtime.count(224, smoke=32) == 224  # no laptop size given: the full one
    monkeypatch.setenv("TLH_SMOKE", "1")
    assert runtime.count(20, smoke=1, laptop=3) == 1
    assert runtime.count(60, laptop=20) == 20  # no smoke size given: the budget's own


def test_claims_print_instead_of_failing_with_claims_off(auto_budget, monkeypatch, capsys):
    monkeypatch.setenv("TLH_CLAIMS", "0")
    runtime.claim(False, "random weights beat nothing")
    assert "TLH_CLAIMS=0, not checked: does not hold" in capsys.readouterr().out
    monkeypatch.setenv("TLH_CLAIMS", "1")
    with pytest.raises(AssertionError, match="random weights"):
        runtime.claim(False, "random weights beat nothing")


def test_network_probe_is_asked_once_and_reads_failures_as_offline(monkeypatch):
    import urllib.request

    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise OSError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    runtime.network_reachable.cache_clear()
    try:
        assert runtime.network_reachable() is False
        assert runtime.network_reachable() is False
        assert len(calls) == 1 and calls[0][0].get_method() == "HEAD"
    finally:
        runtime.network_reachable.cache_clear()


def test_describe_names_the_budget_and_how_to_change_it(auto_budget, monkeypatch):
    monkeypatch.setenv("TLH_BUDGET", "laptop")
    assert runtime.describe()["budget"].startswith("laptop (set by TLH_BUDGET; TLH_BUDGET=reduced, laptop or full")
