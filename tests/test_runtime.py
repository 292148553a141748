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


@pytest.mark.parametrize("raw, expected", [("1", True), ("true", True), ("0", False), ("", False), ("off", False)])
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
    assert {"mode", "device", "torch", "torchvision", "python"} <= set(info)


def test_smoke_counts_and_claims(monkeypatch, capsys):
    monkeypatch.delenv("TLH_SMOKE", raising=False)
    assert not runtime.is_smoke()
    assert runtime.count(20, smoke=1) == 20 and runtime.count(None, smoke=8) is None
    runtime.claim(True, "holds")
    with pytest.raises(AssertionError, match="DANN beats source-only"):
        runtime.claim(False, "DANN beats source-only")
    monkeypatch.setenv("TLH_SMOKE", "1")
    assert runtime.is_smoke() and "smoke" in runtime.describe()["mode"]
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
