"""The student-project template runs end to end on a small folder of generated images."""

import importlib.util
import json
from pathlib import Path

import pytest
from PIL import Image

from tlhelpers.data.shapes import make_shapes

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


def test_template_rejects_a_missing_folder(tmp_path):
    with pytest.raises(SystemExit, match="not a folder"):
        _load_script().main([str(tmp_path / "nope")])
