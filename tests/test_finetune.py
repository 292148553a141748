"""Tests for tlhelpers.transfer.finetuning, finetune_data and proxy_pretraining on tiny shapes data."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from tlhelpers.course import proxy_pretraining
from tlhelpers.course.finetune_data import load_finetune_data
from tlhelpers.course.proxy_pretraining import (
    SOURCE_CLASSES,
    proxy_pretrained_state,
    source_accuracy,
)
from tlhelpers.data.preprocessing import image_transforms, plain_preset
from tlhelpers.transfer.finetuning import (
    STRATEGIES,
    Strategy,
    StrategyResult,
    prepare_model,
    results_table,
    run_strategy,
)


@pytest.fixture(scope="module")
def loaders():
    train, val, test = load_finetune_data(True, 16, n_per_class=4)
    tf = image_transforms(plain_preset(16), train=False)
    return (DataLoader(train.with_transform(image_transforms(plain_preset(16), train=True)), batch_size=8, shuffle=True),
            DataLoader(val.with_transform(tf), batch_size=16), DataLoader(test.with_transform(tf), batch_size=16))


@pytest.fixture(scope="module")
def source_state():
    torch.manual_seed(3)
    from tlhelpers.models.backbones import build_classifier

    return build_classifier("mini_resnet", 10, weights=None).model.state_dict()


def test_load_finetune_data_reduced_split_and_transforms():
    train, val, test = load_finetune_data(True, 16, n_per_class=6)
    assert (len(train), len(val), len(test)) == (60, 20, 60) and train.num_classes == 10
    assert not any(torch.equal(val.images[0], img) for img in train.images)
    with pytest.raises(ValueError, match="val_fraction"):
        load_finetune_data(True, 16, val_fraction=1.0)


@pytest.mark.parametrize("target", ["near", "far"])
def test_finetune_targets_are_balanced_disjoint_and_deterministic(target):
    train, val, test = load_finetune_data(True, 16, target=target, n_per_class=5, seed=2)
    for ds, n in ((train, 5), (val, 1), (test, 5)):
        assert torch.bincount(ds.labels, minlength=10).tolist() == [n] * 10
    seen = {bytes(img.numpy()) for img in train.images}
    assert not any(bytes(img.numpy()) in seen for img in [*val.images, *test.images])
    again = load_finetune_data(True, 16, target=target, n_per_class=5, seed=2)[0]
    other = load_finetune_data(True, 16, target=target, n_per_class=5, seed=3)[0]
    assert torch.equal(train.images, again.images) and not torch.equal(train.images, other.images)


def test_pets_laptop_subset_is_balanced_disjoint_and_decodes_only_what_it_uses(tmp_path, monkeypatch):
    from fakes import write_pets

    from tlhelpers.data import tensor_cache

    breeds = ("Abyssinian", "american_bulldog", "Bengal")
    rows = write_pets(tmp_path, breeds=breeds, n_trainval=7, n_test=5, size=(40, 30))
    decoded = []
    real = tensor_cache.to_tensor_dataset
    monkeypatch.setattr(tensor_cache, "to_tensor_dataset", lambda ds, *a, **k: decoded.append(len(ds)) or real(ds, *a, **k))
    train, val, test = load_finetune_data(False, 24, n_per_class=3, n_test_per_class=2, root=tmp_path, progress=False)
    assert decoded == [3 * 2, 3 * (3 + 2)]  # test sample, then train + validation samples: nothing else decoded
    for ds, n in ((train, 3), (val, 2), (test, 2)):
        assert torch.bincount(ds.labels, minlength=3).tolist() == [n] * 3
    assert train.classes == val.classes == test.classes and len(train.classes) == 3
    seen = {bytes(img.numpy()) for img in train.images}
    assert not any(bytes(img.numpy()) in seen for img in val.images)
    # the same seed gives the same sample (read back from the cache), another seed other images
    assert len(list((tmp_path / "cache").glob("pets_*per_class_seed0.pt"))) == 2
    again = load_finetune_data(False, 24, n_per_class=3, n_test_per_class=2, root=tmp_path, progress=False)
    assert torch.equal(again[0].images, train.images)
    other = load_finetune_data(False, 24, n_per_class=3, n_test_per_class=2, root=tmp_path, progress=False, seed=1)
    assert not torch.equal(other[0].images, train.images)
    # without a sample, everything (the full budget)
    full_train, full_val, full_test = load_finetune_data(False, 24, root=tmp_path, progress=False)
    assert (len(full_train) + len(full_val), len(full_test)) == (len(rows["trainval"]), len(rows["test"]))


def test_far_target_has_the_fine_textures_near_lacks():
    near = load_finetune_data(True, 32, n_per_class=10)[0]  # "near" is the default
    far = load_finetune_data(True, 32, target="far", n_per_class=10)[0]
    # high-pass energy: mean squared difference of horizontal neighbours, an independent measure
    def energy(ds):
        x = ds.images.float() / 255
        return float(((x[..., 1:] - x[..., :-1]) ** 2).mean())

    assert energy(far) > 1.4 * energy(near)
    assert [c.split()[-1] for c in far.classes] == [c.split()[-1] for c in near.classes]  # same shapes
    assert far.classes != near.classes


def test_far_target_and_unknown_targets_are_refused(tmp_path):
    with pytest.raises(ValueError, match="only in reduced mode"):
        load_finetune_data(False, 32, target="far", root=tmp_path)
    with pytest.raises(ValueError, match="near, far"):
        load_finetune_data(True, 32, target="medium")


def test_prepare_model_uses_source_weights_except_for_scratch(source_state):
    a = prepare_model(STRATEGIES[0], "mini_resnet", 3, weights=None, source_state=source_state)
    d = prepare_model(STRATEGIES[3], "mini_resnet", 3, weights=None, source_state=source_state)
    assert a.weights_loaded and not d.weights_loaded
    assert torch.equal(a.model.conv1.weight, source_state["conv1.weight"])
    assert not torch.equal(d.model.conv1.weight, source_state["conv1.weight"])


def test_run_strategies_freeze_and_count(loaders, source_state):
    train_loader, val_loader, test_loader = loaders
    results = [
        run_strategy(s, arch="mini_resnet", num_classes=10, train_loader=train_loader, val_loader=val_loader,
                     test_loader=test_loader, num_epochs=1, weights=None, source_state=source_state, progress=False)
        for s in STRATEGIES
    ]
    counts = [r.trainable_params for r in results]
    assert counts[0] < counts[1] < counts[2] == counts[3] == results[3].total_params
    head_only = results[0].model.state_dict()
    for name, value in source_state.items():
        if not name.startswith("fc."):
            assert torch.equal(head_only[name], value), name  # weights and BN statistics
    assert all(0 <= r.test_acc <= 1 and r.seconds_per_epoch > 0 for r in results)
    table = results_table(results)
    assert table.count("\n") == 5 and "(d) from scratch" in table
    assert results[2].to_dict()["history"]["val_acc"]


def test_head_only_on_cached_features_passes_each_image_once_and_matches_the_whole_model(loaders, source_state):
    train_loader, val_loader, test_loader = loaders
    before = prepare_model(STRATEGIES[0], "mini_resnet", 10, source_state=source_state).model.state_dict()
    passes = []
    original_forward = torch.nn.Conv2d.forward
    try:  # count the batches that go through the backbone's first convolution
        torch.nn.Conv2d.forward = lambda self, x: (passes.append(len(x)) if self.in_channels == 3 else None) or original_forward(self, x)
        result = run_strategy(STRATEGIES[0], arch="mini_resnet", num_classes=10, train_loader=train_loader,
                              val_loader=val_loader, test_loader=test_loader, num_epochs=4, lr=1e-2,
                              source_state=source_state, cache_features=True, progress=False)
    finally:
        torch.nn.Conv2d.forward = original_forward
    sizes = sum(len(loader.dataset) for loader in loaders)
    assert sum(passes) == sizes, "four epochs, but each image goes through the backbone once"
    assert len(result.history["val_acc"]) == 4 and result.feature_seconds is not None
    after = result.model.state_dict()
    head = {n for n in after if n.startswith("fc.")}
    assert all(torch.equal(before[n], after[n]) for n in after if n not in head), "the backbone is untouched"
    assert not all(torch.equal(before[n], after[n]) for n in head), "the head was trained"
    # the reported accuracy is that of the whole model, head put back in place, on the test images
    from tlhelpers.training.engine import evaluate

    assert abs(evaluate(result.model, test_loader)["acc"] - result.test_acc) < 1e-6
    assert "once, to cache the features" in results_table([result])
    with pytest.raises(ValueError, match="strategy \\(b\\).*cache_features=False"):
        run_strategy(STRATEGIES[1], arch="mini_resnet", num_classes=10, train_loader=train_loader,
                     source_state=source_state, cache_features=True)


def test_discriminative_strategy_sets_group_lrs(loaders, source_state, monkeypatch):
    seen = {}
    real = torch.optim.AdamW

    def spy(groups, *args, **kwargs):
        seen.update({g["name"]: g["lr"] for g in groups})
        return real(groups, *args, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", spy)
    run_strategy(Strategy("x", "x", None, backbone_lr_mult=0.1), arch="mini_resnet", num_classes=10,
                 train_loader=loaders[0], num_epochs=1, lr=1e-2, weights=None, source_state=source_state,
                 progress=False)
    assert seen["fc"] == pytest.approx(1e-2) and seen["default"] == pytest.approx(1e-3)


def test_proxy_pretraining_is_cached(tmp_path, monkeypatch):
    kwargs = {"n_per_class": 2, "num_epochs": 1, "batch_size": 8, "root": tmp_path, "progress": False}
    first = proxy_pretrained_state("mini_resnet", 16, **kwargs)
    files = list((tmp_path / "checkpoints").glob("*.pt"))
    assert len(files) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although the cache exists")

    monkeypatch.setattr(proxy_pretraining, "fit", no_training)
    second = proxy_pretrained_state("mini_resnet", 16, **kwargs)
    assert all(torch.equal(first[k], second[k]) for k in first)
    files[0].write_bytes(b"truncated")  # a corrupt cache is retrained, not trusted
    with pytest.raises(AssertionError, match="retrained"):
        proxy_pretrained_state("mini_resnet", 16, **kwargs)


def test_source_accuracy_matches_a_manual_count(source_state):
    from tlhelpers.course.shapes import make_shapes
    from tlhelpers.models.backbones import build_classifier

    acc = source_accuracy(source_state, "mini_resnet", 16, n_per_class=3, seed=1)
    model = build_classifier("mini_resnet", 10, weights=None).model
    model.load_state_dict(source_state)
    model.eval()
    test = make_shapes("test", 3, 16, class_ids=SOURCE_CLASSES, seed=1).with_transform(image_transforms(plain_preset(16), train=False))
    with torch.no_grad():
        correct = sum(int(model(x[None]).argmax(1).item() == y) for x, y in test)
    assert acc == pytest.approx(correct / len(test))


def test_plot_strategies_by_target_draws_one_bar_per_run():
    import matplotlib

    matplotlib.use("Agg")
    from tlhelpers.training.engine import History
    from tlhelpers.transfer.finetuning import plot_strategies_by_target

    def result(strategy, acc):
        return StrategyResult(strategy, torch.nn.Identity(), History(), 1, 1, 0.1, acc, True)

    near = [result(s, acc) for s, acc in zip(STRATEGIES, (0.5, 0.52, 0.51, 0.3))]
    far = [result(s, acc) for s, acc in zip(STRATEGIES[:3], (0.3, 0.36, 0.35))]
    fig = plot_strategies_by_target({"near": near, "far": far}, chance=0.1)
    ax = fig.axes[0]
    heights = sorted(round(p.get_height(), 6) for p in ax.patches)
    assert heights == sorted(round(100 * a, 6) for a in (0.5, 0.52, 0.51, 0.3, 0.3, 0.36, 0.35))
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"({s.key}) {s.name}" for s in STRATEGIES]
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"near target", "far target", "chance"}


def test_plot_strategies_by_target_skips_runs_without_a_test_accuracy():
    import matplotlib

    matplotlib.use("Agg")
    from tlhelpers.training.engine import History
    from tlhelpers.transfer.finetuning import plot_strategies_by_target

    def result(strategy, acc):
        return StrategyResult(strategy, torch.nn.Identity(), History(), 1, 1, 0.1, acc, True)

    # run_strategy without a test_loader leaves test_acc None: no bar, the others drawn where they belong
    near = [result(s, acc) for s, acc in zip(STRATEGIES[:3], (0.5, None, 0.25))]
    fig = plot_strategies_by_target({"near": near})
    bars = sorted((round(p.get_x() + p.get_width() / 2, 6), round(p.get_height(), 6)) for p in fig.axes[0].patches)
    assert bars == [(0.0, 50.0), (2.0, 25.0)]


def test_plot_strategies_by_target_house_style():
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    from tlhelpers.core.style import method_colour
    from tlhelpers.training.engine import History
    from tlhelpers.transfer.finetuning import plot_strategies_by_target

    def result(strategy, acc):
        return StrategyResult(strategy, torch.nn.Identity(), History(), 1, 1, 0.1, acc, True)

    near = [result(s, acc) for s, acc in zip(STRATEGIES, (0.5, 0.52, 0.51, 0.28))]
    far = [result(s, acc) for s, acc in zip(STRATEGIES[:3], (0.33, 0.36, 0.35))]
    fig = plot_strategies_by_target({"near": near, "far": far}, chance=0.1)
    assert not plt.fignum_exists(fig.number), "returned closed: shown once"
    ax = fig.axes[0]
    colours = {round(p.get_height(), 6): to_hex(p.get_facecolor()) for p in ax.patches}
    assert colours[50.0] == colours[28.0] == method_colour("near").lower()
    assert colours[33.0] == colours[36.0] == method_colour("far").lower()
    chance = [line for line in ax.get_lines() if line.get_label() == "chance"]
    assert len(chance) == 1 and chance[0].get_ydata()[0] == pytest.approx(10.0)
    legend = ax.get_legend()
    assert legend.get_bbox_to_anchor().transformed(ax.transAxes.inverted()).x0 > 1, "legend outside the bars"
