"""benchmarks/notebook_times.py without running notebooks, and the laptop budget's stand-in writers (small counts)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from types import SimpleNamespace

import fakes
import numpy as np
import pytest
from PIL import Image

from tlhelpers.data.torchvision_sets import load_dataset

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
ENV = ("TLH_BUDGET", "TLH_CLAIMS", "TLH_DATA", "TORCH_HOME", "TLH_DEVICE", "TLH_REDUCED")


@pytest.fixture
def nt(monkeypatch):
    """The benchmark script as a module (``harness`` importable as when it runs), the settings restored after."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    for name in ENV:  # main() sets these for the kernels; restore them after the test
        monkeypatch.delenv(name, raising=False)
    spec = importlib.util.spec_from_file_location("notebook_times_under_test", ROOT / "benchmarks" / "notebook_times.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "hardware", lambda: "test CPU, 2 cores")
    return module


def _fake_timer(calls):
    def time_notebook(path, timeout, cold, stand_in_data=None):
        calls.append((path.name, {k: os.environ.get(k) for k in ENV}, cold, stand_in_data))
        return 10.0 * len(calls)
    return time_notebook


def test_only_merges_into_the_budgets_json_and_keeps_the_others(nt, tmp_path, monkeypatch):
    first, second, third = NOTEBOOKS[:3]
    old = {"benchmark": "notebook_times", "mode": "reduced", "cold": False, "hardware": "test CPU, 2 cores",
           "date": "2026-01-02T03:04:05+00:00", "torch": "2.0", "seconds": {first: 5.0, second: 7.0}}
    out = tmp_path / "notebook_times_reduced.json"
    out.write_text(json.dumps(old))
    calls = []
    monkeypatch.setattr(nt, "time_notebook", _fake_timer(calls))
    nt.main(["--reduced", "--only", Path(third).stem, second, "--results-dir", str(tmp_path)])
    assert [c[0] for c in calls] == [second, third]  # notebook order, whatever the order asked
    assert calls[0][1]["TLH_BUDGET"] == "reduced"
    d = json.loads(out.read_text())
    assert d["seconds"] == {first: 5.0, second: 10.0, third: 20.0}
    assert d["dates"][first] == old["date"] and d["dates"][second] == d["dates"][third] == d["date"] != old["date"]
    assert d["mode"] == "reduced" and d["weights"] == nt.REDUCED_WEIGHTS and "accuracy" not in d
    assert d["budget"]["notebooks_done"] == d["budget"]["notebooks_planned"] == 2
    # without --only the file is replaced: the old notebook times go
    calls.clear()
    monkeypatch.setattr(nt, "select_notebooks", lambda notebooks, only: [ROOT / "notebooks" / third])
    nt.main(["--budget", "reduced", "--results-dir", str(tmp_path)])
    assert json.loads(out.read_text())["seconds"] == {third: 10.0}


def test_a_stand_in_run_sets_the_laptop_settings_and_says_what_it_measured(nt, tmp_path, monkeypatch):
    written = []
    stand_ins = SimpleNamespace(write_laptop_datasets=lambda root: written.append(("data", root)),
                                write_weights=lambda home, archs: written.append(("weights", home, archs)))
    monkeypatch.setattr(nt, "_fakes", lambda: stand_ins)
    calls = []
    monkeypatch.setattr(nt, "time_notebook", _fake_timer(calls))
    args = ["--budget", "laptop", "--stand-ins", str(tmp_path / "si"), "--only", NOTEBOOKS[0], "--results-dir", str(tmp_path)]
    nt.main(args)
    env = calls[0][1]
    assert env["TLH_BUDGET"] == "laptop" and env["TLH_CLAIMS"] == "0" and env["TLH_DEVICE"] == "cpu"
    assert env["TLH_DATA"] == str((tmp_path / "si" / "data").resolve()) == str(calls[0][3])
    assert env["TORCH_HOME"] == str((tmp_path / "si" / "torch").resolve())
    d = json.loads((tmp_path / "notebook_times_laptop.json").read_text())
    assert d["mode"] == "laptop" and d["seconds"] == {NOTEBOOKS[0]: 10.0}
    assert d["weights"] == "random (stand-in files at the real sizes)" and d["accuracy"] == "not measured"
    # the datasets are written once (the .complete marker); the weights writer keeps files already there
    nt.main(args)
    assert [w[0] for w in written] == ["data", "weights", "weights"]
    assert written[1][2] == ("resnet50", "vgg16", "resnet18")


def test_merging_times_measured_otherwise_fails_before_running(nt, tmp_path, monkeypatch):
    real = nt.build_result("laptop", {NOTEBOOKS[0]: 60.0}, cold=False, stand_ins=False, hardware="test CPU, 2 cores",
                           date="2026-01-01T00:00:00", torch_version="2", max_minutes=None, planned=1)
    (tmp_path / "notebook_times_laptop.json").write_text(json.dumps(real))
    monkeypatch.setattr(nt, "_fakes", lambda: SimpleNamespace(write_laptop_datasets=lambda root: None,
                                                              write_weights=lambda home, archs: None))
    calls = []
    monkeypatch.setattr(nt, "time_notebook", _fake_timer(calls))
    with pytest.raises(SystemExit, match="weights 'ImageNet' -> 'random"):
        nt.main(["--budget", "laptop", "--stand-ins", str(tmp_path / "si"), "--only", NOTEBOOKS[1],
                 "--results-dir", str(tmp_path)])
    assert calls == []  # nothing was timed for nothing


def test_budget_and_notebook_choices(nt):
    assert nt.resolve_budget(nt.parse_args(["--reduced"])) == "reduced"
    assert nt.resolve_budget(nt.parse_args(["--budget", "full"])) == "full"
    with pytest.raises(ValueError, match="--stand-ins times the laptop budget"):
        nt.resolve_budget(nt.parse_args(["--reduced", "--stand-ins", "x"]))
    with pytest.raises(ValueError, match="contradicts"):
        nt.resolve_budget(nt.parse_args(["--reduced", "--budget", "laptop"]))
    notebooks = [ROOT / "notebooks" / n for n in NOTEBOOKS]
    assert nt.select_notebooks(notebooks, None) == notebooks
    with pytest.raises(ValueError, match="--only nope: no such notebook"):
        nt.select_notebooks(notebooks, ["nope"])


def test_fast_mnist_writer_gives_files_torchvision_reads(tmp_path):
    written = fakes.write_mnist(tmp_path, n_train=60, n_test=25, fast=True)
    for split, n in (("train", 60), ("test", 25)):
        images, labels = written[split]
        ds = load_dataset("mnist", split, root=tmp_path, download=False)
        assert len(ds) == n and ds.targets.tolist() == (np.arange(n) % 10).tolist() == labels.tolist()
        assert np.array_equal(ds.data.numpy(), images)
        assert (images.reshape(n, -1).max(1) > 200).all()  # every image has ink
        ones = images[labels == 1].reshape(-1, 28 * 28)
        assert len({row.tobytes() for row in ones}) > 1  # shifted / redrawn copies, not one image


def test_fast_mnistm_writer_gives_files_the_course_reads(tmp_path):
    images, labels = fakes.write_mnistm(tmp_path, n_train=23, n_test=4, fast=True)["train"]
    ds = load_dataset("mnistm", "train", root=tmp_path, download=False)
    assert len(ds) == 23 and [ds[i][1] for i in range(23)] == labels.tolist()
    assert np.array_equal(np.asarray(ds[13][0].convert("RGB")), images[13])
    with Image.open(tmp_path / "mnist_m" / "mnist_m_test" / "00000003.png") as png:
        assert png.size == (28, 28) and png.mode == "RGB"


def test_omniglot_writer_takes_real_alphabets_and_its_defaults_stay(tmp_path):
    alphabets = {"background": [("Latin", 3), ("Greek", 2)], "evaluation": [("Angelic", 1)]}
    written = fakes.write_omniglot(tmp_path / "a", n_drawings=2, alphabets=alphabets)
    ds = load_dataset("omniglot", "background", root=tmp_path / "a", download=False)
    assert len(ds) == 10 and sorted(ds.classes) == sorted(written["background"]) and len(ds.classes) == 5
    assert "Greek/character02" in ds.classes and written["evaluation"] == ["Angelic/character01"]
    default = fakes.write_omniglot(tmp_path / "b", n_drawings=1)
    assert [len(default[s]) for s in ("background", "evaluation")] == [18, 12]
    assert default["background"][0] == "Alphabet_of_the_Magi/character01"
    # the real splits' numbers
    real = fakes.OMNIGLOT_ALPHABETS
    assert (len(real["background"]), sum(n for _, n in real["background"])) == (30, 964)
    assert (len(real["evaluation"]), sum(n for _, n in real["evaluation"])) == (20, 659)


def test_laptop_writer_asks_for_the_real_sizes(tmp_path, monkeypatch):
    calls = {}
    for name in ("write_pets", "write_mnist", "write_mnistm", "write_omniglot"):
        monkeypatch.setattr(fakes, name, lambda root, *a, _name=name, **kw: calls.setdefault(_name, kw))
    sizes = fakes.write_laptop_datasets(tmp_path)
    assert calls["write_pets"]["size"] == (500, 375) and len(calls["write_pets"]["breeds"]) == 37
    assert (calls["write_pets"]["n_trainval"], calls["write_pets"]["n_test"]) == (30, 15)
    assert (calls["write_mnist"]["n_train"], calls["write_mnist"]["n_test"], calls["write_mnist"]["fast"]) == (60000, 10000, True)
    assert (calls["write_mnistm"]["n_train"], calls["write_mnistm"]["n_test"]) == (59001, 9001)
    assert calls["write_omniglot"]["alphabets"] is fakes.OMNIGLOT_ALPHABETS
    assert sizes["omniglot"] == {"background": 964 * 20, "evaluation": 659 * 20}
    assert sizes["pets"] == {"trainval": 1110, "test": 555}


def test_the_37_breeds_keep_the_cat_and_dog_convention(tmp_path):
    cats = [b for b in fakes.PETS_BREEDS if b[0].isupper()]
    assert len(fakes.PETS_BREEDS) == len(set(fakes.PETS_BREEDS)) == 37 and len(cats) == 12
    rows = fakes.write_pets(tmp_path, breeds=fakes.PETS_BREEDS, n_trainval=1, n_test=1, size=(20, 15))
    ds = load_dataset("pets", "test", root=tmp_path, download=False)
    assert len(ds) == 37 and len(ds.classes) == 37 and [label for _, label in rows["test"]] == list(range(37))
