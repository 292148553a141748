"""The three recipes in examples/recipes run end to end on small folders of generated images.

Each class has its own colour (with random brightness, noise and a distractor patch), so any
sensible use of a backbone's features separates the classes: a recipe that mixes up images and
labels, or features and prototypes, falls to chance and fails here. Pretrained weights are faked
(random, but loaded through the real hub-cache path), so nothing is downloaded.
"""

import csv
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fakes import write_weights
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from tlhelpers import (
    build_classifier,
    predict,
    safe_load,
    stored_size,
    to_tensor_dataset,
    weights_preset,
)

RECIPES = Path(__file__).resolve().parents[1] / "examples" / "recipes"
COLOURS = {"blue": (40, 60, 200), "green": (40, 170, 60), "red": (200, 40, 40), "yellow": (220, 200, 40)}


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, RECIPES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_folder(root: Path, per_class: int, seed: int, colours: dict = COLOURS, size: int = 40) -> None:
    """``root/<colour>/NN.png``: the class colour at a random brightness, pixel noise and a grey patch."""
    rng = np.random.default_rng(seed)
    for name, rgb in colours.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = np.array(rgb, dtype=np.float64) * rng.uniform(0.7, 1.1) + rng.normal(0, 20, (size, size, 3))
            y, x = rng.integers(0, size // 2, 2)
            image[y:y + size // 3, x:x + size // 3] = rng.uniform(60, 200)
            Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(root / name / f"{i:02d}.png")


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("TLH_REDUCED", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    write_weights(tmp_path / "torch", archs=("resnet18",))
    return tmp_path


def test_features_probe_separates_colour_classes_well_above_chance(offline):
    _write_folder(offline / "images", per_class=10, seed=0)
    out = offline / "run"
    summary = _load("features_probe").main([str(offline / "images"), "--arch", "resnet18", "--image-size", "32",
                                            "--out", str(out)])
    assert summary["pretrained"] is True and summary["feature_dim"] == 512
    assert summary["classes"] == sorted(COLOURS) and summary["n_train"] + summary["n_val"] == 40
    assert summary["val_acc"] >= 0.75  # chance is 0.25
    assert json.loads((out / "metrics.json").read_text())["val_acc"] == summary["val_acc"]
    assert any((out / "features").iterdir()) and (out / "cache" / "all.pt").exists()


def test_features_probe_uses_explicit_train_and_val_folders(offline):
    _write_folder(offline / "images" / "train", per_class=8, seed=1)
    _write_folder(offline / "images" / "val", per_class=3, seed=2)
    summary = _load("features_probe").main([str(offline / "images"), "--arch", "resnet18", "--image-size", "32",
                                            "--out", str(offline / "run")])
    assert (summary["n_train"], summary["n_val"]) == (32, 12)
    assert summary["val_acc"] >= 0.75


def test_features_probe_rejects_a_missing_folder(tmp_path):
    with pytest.raises(SystemExit, match="not a folder"):
        _load("features_probe").main([str(tmp_path / "nope")])


def test_fewshot_prototypes_classify_new_classes_from_three_shots(offline):
    _write_folder(offline / "support", per_class=3, seed=3)
    _write_folder(offline / "query", per_class=6, seed=4)
    out = offline / "run"
    summary = _load("fewshot_prototypes").main([str(offline / "support"), str(offline / "query"),
                                                "--arch", "resnet18", "--image-size", "32", "--out", str(out)])
    assert summary["shots"] == [3, 3, 3, 3] and summary["n_query"] == 24 and summary["pretrained"] is True
    assert summary["acc"] >= 0.75  # chance is 0.25
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    # The file names say the true class; the accuracy must agree with the written predictions.
    assert [Path(r["file"]).parent.name for r in rows] == [r["true"] for r in rows]
    assert summary["acc"] == pytest.approx(np.mean([r["true"] == r["predicted"] for r in rows]))


def test_fewshot_prototypes_rejects_mismatched_classes(offline):
    _write_folder(offline / "support", per_class=1, seed=5, colours={"red": (200, 0, 0), "blue": (0, 0, 200)})
    _write_folder(offline / "query", per_class=1, seed=6, colours={"red": (200, 0, 0), "green": (0, 200, 0)})
    with pytest.raises(SystemExit, match="different classes"):
        _load("fewshot_prototypes").main([str(offline / "support"), str(offline / "query")])


def _write_target(root: Path, per_class: int, seed: int, labelled: bool) -> list[Path]:
    """The colour classes in another domain (darker, tinted, noisier); flat files unless ``labelled``."""
    shifted = {name: tuple(int(0.6 * c + 50 * (k == 2)) for k, c in enumerate(rgb)) for name, rgb in COLOURS.items()}
    _write_folder(root / "by_class", per_class, seed, colours=shifted)
    if labelled:
        return sorted((root / "by_class").rglob("*.png"))
    flat = root / "flat"
    flat.mkdir()
    for i, path in enumerate(sorted((root / "by_class").rglob("*.png"))):
        path.rename(flat / f"img_{(7 * i) % 97:03d}.png")  # the file name says nothing about the class
    shutil.rmtree(root / "by_class")
    return sorted(flat.glob("*.png"))


def test_domain_adaptation_trains_dann_writes_outputs_and_resumes(offline):
    _write_folder(offline / "source", per_class=8, seed=7)
    files = _write_target(offline / "target", per_class=4, seed=8, labelled=False)
    out = offline / "run"
    args = [str(offline / "source"), str(offline / "target" / "flat"), "--arch", "resnet18", "--epochs", "2",
            "--image-size", "32", "--batch-size", "8", "--out", str(out)]
    summary = _load("domain_adaptation").main(args)
    assert summary["method"] == "dann" and summary["pretrained"] is True and summary["epochs"] == 2
    assert summary["target_acc"] is None and sum(summary["target_predicted_counts"]) == len(files) == 16
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert 0 < history["lambda"][0] < history["lambda"][1] < 1  # the GRL ramp of dann_step ran
    assert all(0 <= a <= 1 for a in history["domain_acc"]) and len(history["domain_loss"]) == 2
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == [str(p) for p in files] and {r["predicted"] for r in rows} <= set(COLOURS)
    # The saved weights are a plain classifier's: loaded into a fresh model they give the written predictions.
    model = build_classifier("resnet18", num_classes=4, weights=None).model
    model.load_state_dict(safe_load(out / "model_weights.pt"))
    preset = weights_preset("resnet18", image_size=32)
    images = to_tensor_dataset(ImageFolder(offline / "target"), stored_size(preset), progress=False)
    images = images.with_transform(preset)  # target/ holds only flat/: its files, in sorted order
    logits, _ = predict(model, DataLoader(images, batch_size=16), device="cpu")
    assert [r["predicted"] for r in rows] == [summary["classes"][c] for c in logits.argmax(1).tolist()]
    assert (out / "checkpoint.pt").exists()
    again = _load("domain_adaptation").main(args)  # resumed from the finished checkpoint: nothing retrains
    assert again["source_val_acc"] == pytest.approx(summary["source_val_acc"])
    assert again["target_predicted_counts"] == summary["target_predicted_counts"]


def test_domain_adaptation_scores_a_labelled_target_without_training_on_its_labels(offline):
    _write_folder(offline / "source", per_class=8, seed=9)
    _write_target(offline / "target", per_class=4, seed=10, labelled=True)
    summary = _load("domain_adaptation").main([
        str(offline / "source"), str(offline / "target" / "by_class"), "--arch", "resnet18", "--method",
        "source_only", "--epochs", "1", "--image-size", "32", "--batch-size", "8", "--out", str(offline / "run")])
    assert summary["method"] == "source_only" and summary["domain_acc"] is None
    assert 0.0 <= summary["target_acc"] <= 1.0 and sum(summary["target_predicted_counts"]) == 16
