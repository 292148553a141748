from __future__ import annotations

import pytest
import torch

from tlhelpers.probe import (
    FeatureLoader,
    cpu_threads,
    make_head,
    plot_layer_probes,
    probe_accuracy,
    sklearn_probe,
    train_linear_probe,
)


def blobs(n_per_class: int = 40, dim: int = 16, num_classes: int = 4, seed: int = 0):
    """Gaussian clusters on a large offset and scale, so standardization matters."""
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_classes, dim, generator=gen) * 3
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    x = centers[labels] + torch.randn(len(labels), dim, generator=gen)
    return x * 50 + 200, labels


def test_feature_loader_covers_every_row_once_per_epoch():
    x, y = blobs()
    loader = FeatureLoader(x, y, batch_size=32, shuffle=True, seed=1)
    assert len(loader) == 5
    batches = list(loader)
    rows = torch.cat([bx for bx, _ in batches])
    labels = torch.cat([by for _, by in batches])
    # every row comes exactly once, with its own label
    assert torch.equal(torch.sort(rows[:, 0]).values, torch.sort(x[:, 0]).values)
    lookup = {float(r): int(lab) for r, lab in zip(x[:, 0], y)}
    assert all(lookup[float(r)] == int(lab) for r, lab in zip(rows[:, 0], labels))
    first, second = next(iter(loader))[1], next(iter(loader))[1]
    assert not torch.equal(first, second)  # a new order every epoch
    ordered = FeatureLoader(x, y, batch_size=32)
    assert torch.equal(torch.cat([by for _, by in ordered]), y)
    assert len(labels) == len(y)


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_probe_learns_separable_features_and_agrees_with_sklearn(head):
    x, y = blobs()
    xt, yt = blobs(n_per_class=20, seed=0)
    result = train_linear_probe(x, y, xt, yt, head=head, num_epochs=20, seed=0)
    assert result.history["train_loss"][-1] < result.history["train_loss"][0]
    assert result.val_acc > 0.9
    assert probe_accuracy(result.model, xt, yt) == pytest.approx(result.val_acc)
    reference = sklearn_probe(x, y, xt, yt)
    assert abs(reference["acc"] - result.val_acc) < 0.1


def test_probe_is_at_chance_on_shuffled_labels():
    x, y = blobs(n_per_class=50)
    gen = torch.Generator().manual_seed(3)
    y_random = y[torch.randperm(len(y), generator=gen)]
    xt, yt = blobs(n_per_class=50, seed=1)
    result = train_linear_probe(x, y_random, xt, yt[torch.randperm(len(yt), generator=gen)], num_epochs=5)
    assert result.val_acc < 0.45  # chance is 0.25


def test_bad_input_raises():
    x, y = blobs()
    with pytest.raises(ValueError, match="one label per row"):
        FeatureLoader(x, y[:-1])
    with pytest.raises(ValueError, match=r"expected \(N, D\)"):
        train_linear_probe(x[:, :, None], y)
    with pytest.raises(ValueError, match="neither"):
        train_linear_probe(x, y, x)
    with pytest.raises(ValueError, match="unknown"):
        make_head(4, 2, kind="transformer")


def test_cpu_threads_sets_and_restores_the_thread_count():
    before = torch.get_num_threads()
    with cpu_threads(1, torch.device("cpu")):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with cpu_threads(None, torch.device("cpu")):
        assert torch.get_num_threads() == before


def test_plot_layer_probes_draws_each_series_at_its_layers():
    import matplotlib

    matplotlib.use("Agg")
    layers = ["conv4_3", "conv5_3", "fc7"]
    rows = [{"layer": layer, "target": target, "weights": weights, "test_acc": 0.1 * (i + 1) + (0.3 if weights == "pretrained" else 0)}
            for target in ("near", "far") for weights in ("pretrained", "random") for i, layer in enumerate(layers)]
    rows.append({"layer": "fc7", "target": "extra", "weights": "pretrained", "test_acc": 0.9})
    fig = plot_layer_probes(rows, layers, chance=0.1, title="t")
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"near, pretrained", "near, random", "far, pretrained", "far, random", "extra, pretrained", "chance"}
    assert list(lines["far, random"].get_ydata()) == pytest.approx([0.1, 0.2, 0.3])
    assert list(lines["near, pretrained"].get_xdata()) == [0, 1, 2] and list(lines["extra, pretrained"].get_xdata()) == [2]
    assert lines["near, pretrained"].get_linestyle() == "-" and lines["near, random"].get_linestyle() == "--"
    assert lines["near, random"].get_color() == lines["near, pretrained"].get_color() != lines["far, random"].get_color()
    assert [t.get_text() for t in ax.get_xticklabels()] == layers and ax.get_title() == "t"
    with pytest.raises(ValueError, match="needs keys"):
        plot_layer_probes([{"layer": "pool9", "target": "near", "weights": "random", "test_acc": 0.1}], layers)

