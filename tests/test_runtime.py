import importlib

import pytest
import torch

from tlhelpers import runtime


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
