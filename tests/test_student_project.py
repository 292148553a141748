"""The student-project template runs end to end on a small folder of generated images."""

import importlib.util
import json
from pathlib import Path

import pytest
from PIL import Image

from tlhelpers.course.shapes import make_shapes

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "student_project" / "finetune_folder.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("finetune_folder", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_folder(root: Path, per_class: int = 12) -> None:
    ds = make_shapes("train", n_per_class=per_class, image_size=40, class_ids=[0, 5, 7])
    for i in range(len(ds)):
        folder = root / ds.classes[int(ds.labels[i])].replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(ds.images[i].permute(1, 2, 0).numpy()).save(folder / f"{i:03d}.png")


def test_template_finetunes_a_folder_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("TLH_REDUCED", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    _write_folder(tmp_path / "images")
    script = _load_script()
    args = [str(tmp_path / "images"), "--arch", "resnet18", "--epochs", "2", "--image-size", "32",
            "--batch-size", "8", "--out", str(tmp_path / "run")]
    summary = script.main(args)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["classes"] == ["solid_circle", "striped_star", "striped_triangle"]
    assert metrics["pretrained"] is False  # reduced mode, no cached weights: random init, with a banner
    assert metrics["epochs"] == 2 and len(metrics["history"]["val_acc"]) == 2
    assert 0.0 <= summary["val_acc"] <= 1.0
    assert (tmp_path / "run" / "checkpoint.pt").exists() and (tmp_path / "run" / "cache" / "all.pt").exists()
    # Same command again: the finished checkpoint is resumed, nothing is retrained, results agree.
    again = script.main(args)
    assert again["val_acc"] == pytest.approx(summary["val_acc"])


def test_template_refuses_to_resume_another_run_and_restarts_on_request(tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("TLH_REDUCED", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    _write_folder(tmp_path / "images", per_class=4)
    script = _load_script()
    args = [str(tmp_path / "images"), "--arch", "resnet18", "--epochs", "1", "--image-size", "32",
            "--batch-size", "8", "--out", str(tmp_path / "run")]
    script.main(args)
    # another learning rate in the same --out: refused, naming the change (it used to resume the old run)
    with pytest.raises(SystemExit, match=r"another run: lr 0\.001 -> 0\.002, .*add --restart, or pass another --out"):
        script.main([*args, "--lr", "2e-3"])
    with pytest.raises(SystemExit, match=r"another run: arch resnet18 -> mobilenet_v3_small, .*model parameter names/shapes changed"):
        script.main([*args, "--arch", "mobilenet_v3_small"])
    # a file moved to another class folder: a new cache key (its labels are not reused) and new data
    key = torch.load(tmp_path / "run" / "cache" / "all.pt", weights_only=True)["key"]
    (tmp_path / "images" / "solid_circle" / "002.png").rename(tmp_path / "images" / "striped_star" / "002.png")
    with pytest.raises(SystemExit, match=r"another run: data fingerprint changed;"):
        script.main(args)
    new_key = torch.load(tmp_path / "run" / "cache" / "all.pt", weights_only=True)["key"]
    assert new_key["content"] != key["content"] and new_key["len"] == key["len"]
    # --restart starts a new run over the old checkpoint, which then resumes as usual
    script.main([*args, "--lr", "2e-3", "--restart"])
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["identity"]["settings"]["lr"] == 2e-3 and state["epoch"] == 1
    script.main([*args, "--lr", "2e-3"])


def test_template_rejects_a_missing_folder(tmp_path):
    with pytest.raises(SystemExit, match="not a folder"):
        _load_script().main([str(tmp_path / "nope")])
