from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from tlhelpers.core.style import method_colour
from tlhelpers.data.tensor_dataset import ImageTensorDataset
from tlhelpers.domain.dann import DANN, DigitNet, DomainDiscriminator
from tlhelpers.domain.few_labels import (
    FewLabelResult,
    few_label_curve,
    few_label_finetune,
    labels_saved,
    plot_few_label_curve,
)

CLASSES = [str(i) for i in range(10)]
FAST: dict[str, Any] = {"num_epochs": 2, "lr": 1e-3, "device": "cpu"}


def gaussian_domain(n_per_class, seed, invert=False):
    """Ten Gaussian classes of 3x16x16 uint8 images around fixed prototypes; ``invert`` makes the other domain."""
    protos = torch.rand(10, 3, 16, 16, generator=torch.Generator().manual_seed(123)) * 2 - 1
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(10).repeat_interleave(n_per_class)
    images = 128 + 60 * protos[labels] + 20 * torch.randn(len(labels), 3, 16, 16, generator=g)
    if invert:
        images = 255 - images
    perm = torch.randperm(len(labels), generator=g)
    return ImageTensorDataset(images.clamp(0, 255).round().to(torch.uint8)[perm], labels[perm], CLASSES)


def make_net(seed=0):
    torch.manual_seed(seed)
    return DigitNet(num_classes=10, in_channels=3, image_size=16, feature_dim=32, width=8)


def make_dann(seed=0):
    net = make_net(seed)
    return DANN(net, DomainDiscriminator(32, hidden=8))


TRAIN = gaussian_domain(12, seed=1, invert=True)
TEST = gaussian_domain(10, seed=2, invert=True)


@functools.lru_cache(maxsize=1)
def _source_weights():
    model = make_net(4)
    source = gaussian_domain(12, seed=3)  # the source domain: not inverted
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(30):
        loss = F.cross_entropy(model(source.images.float() / 255), source.labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def source_only():
    """A net trained on the source domain (train-mode BatchNorm statistics): a poor start on the target."""
    model = make_net()
    model.load_state_dict(_source_weights())
    return model


class Spy(Dataset):
    """A dataset that records which items are read."""

    def __init__(self, ds):
        self.ds, self.labels, self.num_classes, self.seen = ds, ds.labels, ds.num_classes, []

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        self.seen.append(int(i))
        return self.ds[i]


def test_input_model_is_untouched():
    net = source_only()
    model = DANN(net, DomainDiscriminator(32, hidden=8))
    net.backbone[0].requires_grad_(False)  # a frozen layer must stay frozen
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = few_label_finetune(model, TRAIN, TEST, 5, num_epochs=5, device="cpu")
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training and all(m.training for m in model.modules())
    assert not any(p.requires_grad for p in net.backbone[0].parameters())
    # the copy did learn something: otherwise "untouched" would be trivially true
    assert result.acc != few_label_finetune(model, TRAIN, TEST, 0, device="cpu").acc


def test_exactly_k_images_per_class_are_read_and_reported():
    spy = Spy(TRAIN)
    result = few_label_finetune(make_net(), spy, TEST, 3, repeats=2, **FAST)
    assert len(result.indices) == 2 and len(result.accs) == 2
    for idx in result.indices:
        assert torch.bincount(TRAIN.labels[idx], minlength=10).tolist() == [3] * 10
        assert len(set(idx.tolist())) == 30
    # the training images read are exactly the reported ones, nothing else
    assert sorted(spy.seen) == sorted(torch.cat(result.indices).tolist())


def test_k0_is_the_models_own_accuracy():
    model = make_net(seed=3)
    result = few_label_finetune(model, TRAIN, TEST, 0, repeats=3, device="cpu")
    model.eval()
    with torch.no_grad():
        expected = (model(TEST.images.float() / 255).argmax(1) == TEST.labels).float().mean().item()
    assert result.k == 0 and result.indices == [] and len(result.accs) == 1
    assert result.acc == pytest.approx(expected, abs=1e-6)


def test_more_labels_help_a_poor_start():
    model = source_only()  # trained on the source domain: about chance on the target
    start, one, ten = (few_label_finetune(model, TRAIN, TEST, k, num_epochs=10, device="cpu") for k in (0, 1, 10))
    assert start.acc < 0.3
    assert ten.acc > start.acc + 0.4
    assert ten.acc > one.acc


def test_repeats_draw_different_images():
    result = few_label_finetune(make_net(), TRAIN, TEST, 2, repeats=3, seed=7, **FAST)
    sets = [frozenset(i.tolist()) for i in result.indices]
    assert len(set(sets)) == 3
    assert result.acc == pytest.approx(sum(result.accs) / 3)
    assert result.ci95 >= 0.0
    # the same seed gives the same draws: repeat r of seed 7 is repeat 0 of seed 7 + r
    again = few_label_finetune(make_net(), TRAIN, TEST, 2, seed=8, **FAST)
    assert torch.equal(again.indices[0], result.indices[1])
    assert again.accs[0] == pytest.approx(result.accs[1])


def test_dann_is_fine_tuned_through_its_classifier():
    dann = few_label_finetune(make_dann(seed=5), TRAIN, TEST, 2, num_epochs=3, device="cpu")
    plain = few_label_finetune(make_net(seed=5), TRAIN, TEST, 2, num_epochs=3, device="cpu")
    assert dann.accs == pytest.approx(plain.accs, abs=1e-6)


def test_curve_gives_every_model_the_same_nested_images():
    models = {"source_only": make_net(1), "dann": make_dann(2)}
    pair = SimpleNamespace(target_train=TRAIN, target_test=TEST)
    curves = few_label_curve(models, pair, ks=(0, 1, 3), **FAST)
    assert list(curves) == ["source_only", "dann"]
    assert [r.k for r in curves["dann"]] == [0, 1, 3]
    for a, b in zip(curves["source_only"], curves["dann"]):
        assert all(torch.equal(x, y) for x, y in zip(a.indices, b.indices))
    one, three = (set(r.indices[0].tolist()) for r in curves["dann"][1:])
    assert one < three
    # a (target_train, target_test) tuple works the same
    assert few_label_curve({"m": make_net(1)}, (TRAIN, TEST), ks=(0,), **FAST)["m"][0].acc == curves["source_only"][0].acc


def curve(ks, accs):
    return [FewLabelResult(k, a if isinstance(a, list) else [a]) for k, a in zip(ks, accs)]


def test_labels_saved_against_a_hand_made_curve():
    curves = {
        # reference listed out of order: the smallest matching k' must win, not the first
        "source_only": curve([10, 0, 5, 1], [0.80, 0.30, 0.70, 0.50]),
        "dann": curve([0, 1, 5, 10], [0.60, 0.75, 0.85, 0.70]),
    }
    assert labels_saved(curves) == {0: 5, 1: 10, 5: None, 10: 5}
    assert list(labels_saved(curves)) == [0, 1, 5, 10]
    assert labels_saved(curves, tolerance=0.06) == {0: 5, 1: 5, 5: 10, 10: 5}
    backwards = labels_saved(curves, reference="dann", adapted="source_only")
    assert backwards == {10: 5, 0: 0, 5: 1, 1: 0} and list(backwards) == [10, 0, 5, 1]


def test_plot_has_one_line_per_model_with_error_bars():
    curves = {
        "source_only": curve([0, 1, 5], [[0.3], [0.4, 0.5], [0.6, 0.7]]),
        "dann": curve([0, 1, 5], [[0.5], [0.6, 0.64], [0.7, 0.8]]),
    }
    fig = plot_few_label_curve(curves, chance=0.1)
    ax = fig.axes[0]
    lines = {str(line.get_label()): line for line in ax.get_lines() if not str(line.get_label()).startswith("_")}
    assert set(lines) == {"source_only", "dann", "chance"}
    for name in ("source_only", "dann"):
        assert torch.as_tensor(lines[name].get_xdata()).tolist() == [0, 1, 5]
        assert torch.as_tensor(lines[name].get_ydata()).tolist() == pytest.approx([r.acc for r in curves[name]])
        assert lines[name].get_color() == method_colour(name)
    assert len(ax.collections) == 2  # one set of error bars per model
    legend = ax.get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == ["source_only", "dann", "chance"]
    single = plot_few_label_curve({"dann": curve([0, 1], [0.5, 0.6])})
    assert len(single.axes[0].collections) == 0 and len(single.axes[0].get_lines()) == 1


SHORT = ImageTensorDataset(TRAIN.images[:30], TRAIN.labels[:30], CLASSES)  # some class has few images


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: few_label_finetune(make_net(), TRAIN, TEST, -1), "negative"),
        (lambda: few_label_finetune(make_net(), SHORT, TEST, int(torch.bincount(SHORT.labels, minlength=10).min()) + 1),
         "larger than class"),
        (lambda: few_label_curve({"m": make_net()}, (TRAIN, TEST), ks=(0, 1, 13)), "larger than class"),
        (lambda: labels_saved({"dann": curve([0], [0.5])}), "unknown reference curve 'source_only'"),
        (lambda: labels_saved({"source_only": curve([0], [0.5])}, adapted="mmd"), "unknown adapted curve 'mmd'"),
    ],
)
def test_bad_input_raises_one_line(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_head_only_trains_the_last_linear_layer_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.randn(30, 12), torch.arange(30) % 3
    from tlhelpers.domain.few_labels import _finetune

    net = _finetune(model, x, y, num_epochs=3, lr=1e-2, weight_decay=0.0, batch_size=8, seed=0,
                    device=torch.device("cpu"), head_only=True)
    assert torch.equal(net[1].weight, model[1].weight), "the body stays frozen"
    assert not torch.equal(net[3].weight, model[3].weight), "the head trains"
    with pytest.raises(ValueError, match="no nn.Linear"):
        _finetune(nn.Sequential(nn.Conv2d(1, 2, 1)), torch.randn(4, 1, 2, 2), torch.zeros(4, dtype=torch.long),
                  num_epochs=1, lr=1e-2, weight_decay=0.0, batch_size=2, seed=0, device=torch.device("cpu"), head_only=True)
