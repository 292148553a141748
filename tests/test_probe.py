from __future__ import annotations

import pytest
import torch

from tlhelpers.transfer.probe import (
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



def test_standardize_keeps_constant_features_at_scale_one():
    from tlhelpers.transfer.probe import Standardize

    x = torch.randn(50, 4)
    x[:, 2] = 0.0  # a ReLU unit silent on every training row
    layer = Standardize(x.mean(0), x.std(0))
    assert layer.std[2] == 1.0 and torch.allclose(layer.std[[0, 1, 3]], x.std(0)[[0, 1, 3]])
    fresh = torch.ones(1, 4)  # the unit fires on a new row
    assert layer(fresh)[0, 2] == 1.0  # not 1e6, as a clamp at 1e-6 would give


def test_probe_loss_stays_sane_when_units_are_silent_on_training_rows():
    x, y = blobs()
    xt, yt = blobs(n_per_class=20, seed=1)
    x = torch.cat([x, torch.zeros(len(x), 3)], 1)
    xt = torch.cat([xt, torch.full((len(xt), 3), 1.0)], 1)
    result = train_linear_probe(x, y, xt, yt, head="mlp", num_epochs=10, seed=0)
    # scaled by a clamped std of 1e-6 the silent units would reach 1e6 on the test rows
    assert max(result.history["val_loss"]) < 3.0 and result.val_acc > 0.5


def test_plot_layer_probes_is_closed_with_house_style():
    import matplotlib.pyplot as plt

    from tlhelpers.core.style import method_colour

    rows = [{"layer": "fc7", "target": target, "weights": "pretrained", "test_acc": 0.5} for target in ("near", "far")]
    fig = plot_layer_probes(rows, ["fc7"], chance=0.1)
    assert not plt.fignum_exists(fig.number)
    ax = fig.axes[0]
    assert ax.get_legend() is not None
    colours = {line.get_label(): line.get_color() for line in ax.get_lines()}
    assert colours["near, pretrained"] == method_colour("near") and colours["far, pretrained"] == method_colour("far")


def test_plot_probe_curves_draws_each_split_per_probe():
    import matplotlib.pyplot as plt

    from tlhelpers.core.style import method_colour
    from tlhelpers.transfer.probe import plot_probe_curves

    x, y = blobs()
    xt, yt = blobs(n_per_class=20, seed=1)
    histories = {name: train_linear_probe(x, y, xt, yt, head=head, num_epochs=3, seed=0).history
                 for name, head in (("linear probe", "linear"), ("MLP head", "mlp"))}
    fig = plot_probe_curves(histories, chance=0.25, eval_name="test", log_loss=True)
    assert not plt.fignum_exists(fig.number)
    loss_ax, acc_ax = fig.axes
    lines = {line.get_label(): line for line in acc_ax.get_lines()}
    assert set(lines) == {"linear probe, train", "linear probe, test", "MLP head, train", "MLP head, test", "chance"}
    assert lines["linear probe, train"].get_linestyle() == "--" and lines["linear probe, test"].get_linestyle() == "-"
    assert lines["linear probe, test"].get_color() == method_colour("linear probe")
    assert lines["MLP head, test"].get_marker() == "o"  # short curves get markers
    assert acc_ax.get_legend() is not None and loss_ax.get_yscale() == "log"
    assert all(float(t).is_integer() for t in acc_ax.get_xticks())
    with pytest.raises(ValueError, match="at least one"):
        plot_probe_curves({})


def test_feature_loader_state_makes_an_interrupted_fit_resume_bit_for_bit(tmp_path):
    from torch import nn

    from tlhelpers.core.runtime import seed_everything
    from tlhelpers.training.engine import classification_step, fit

    g = torch.Generator().manual_seed(0)
    x = torch.randn(80, 6, generator=g)
    y = (x[:, 0] > 0).long()

    def run(ckpt, crash_at=None):
        seed_everything(0)
        model = nn.Linear(6, 2)

        def step(m, batch, state):
            if state.step == crash_at:
                raise KeyboardInterrupt("runtime disconnected")
            return classification_step(m, batch, state)

        fit(model, FeatureLoader(x, y, batch_size=16, shuffle=True, seed=3), 3, lr=0.1, step_fn=step,
            checkpoint_path=ckpt, progress=False)
        return model

    straight = run(None)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "probe.pt", crash_at=5 * 2 + 1)
    resumed = run(tmp_path / "probe.pt")
    assert torch.equal(straight.weight, resumed.weight) and torch.equal(straight.bias, resumed.bias)
    loader = FeatureLoader(x, y, batch_size=16, shuffle=True, seed=3)
    state = loader.state_dict()
    first = [b[1] for b in loader]
    loader.load_state_dict(state)
    assert all(torch.equal(a, b[1]) for a, b in zip(first, loader, strict=True))
