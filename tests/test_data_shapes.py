from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from tlhelpers.course.shapes import CLASS_NAMES, class_name, make_shapes


def test_shapes_dtype_shape_and_names():
    ds = make_shapes("train", n_per_class=3, image_size=32)
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (30, 3, 32, 32)
    assert ds.labels.dtype == torch.int64 and torch.bincount(ds.labels).tolist() == [3] * 10
    assert ds.classes[:2] == ["solid circle", "striped circle"]
    assert len(set(CLASS_NAMES)) == 20
    assert ds.images.float().std() > 20  # not blank


def test_shapes_deterministic_and_splits_differ():
    a = make_shapes("train", n_per_class=4, image_size=32, seed=3)
    b = make_shapes("train", n_per_class=4, image_size=32, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    test = make_shapes("test", n_per_class=4, image_size=32, seed=3)
    assert not torch.equal(a.images, test.images)
    other_seed = make_shapes("train", n_per_class=4, image_size=32, seed=4)
    assert not torch.equal(a.images, other_seed.images)


def test_class_ids_relabel_and_match_full_set():
    sub = make_shapes("train", n_per_class=4, image_size=32, class_ids=[13, 1])
    assert sub.classes == [CLASS_NAMES[13], CLASS_NAMES[1]]
    assert sorted(sub.labels.tolist()) == [0] * 4 + [1] * 4
    full = make_shapes("train", n_per_class=4, image_size=32)
    # class 1 is drawn from its own stream, whichever other classes are requested
    a = sub.images[sub.labels == 1].flatten(1).sum(1).sort().values
    b = full.images[full.labels == 1].flatten(1).sum(1).sort().values
    assert torch.equal(a, b)


def _high_frequency_share(images: torch.Tensor) -> float:
    """Share of the (mean-removed) spectral power at periods of 4 pixels or less."""
    x = images.float() / 255
    power = torch.fft.fft2(x - x.mean((-1, -2), keepdim=True)).abs() ** 2
    freq = torch.fft.fftfreq(x.shape[-1]).abs()
    high = freq[:, None].maximum(freq[None, :]) >= 0.25
    return float(power[..., high].sum() / power.sum())


def test_fine_style_has_far_more_high_frequency_power():
    plain = make_shapes("train", n_per_class=10, image_size=32, seed=1)
    fine = make_shapes("train", n_per_class=10, image_size=32, seed=1, style="fine")
    assert _high_frequency_share(fine.images) > 1.5 * _high_frequency_share(plain.images)
    assert fine.classes[:2] == ["fine-checkered circle", "fine-striped circle"]
    assert class_name(1, "fine") == fine.classes[1] and class_name(1) == plain.classes[1]
    # same seed, own stream: the fine images are not the plain ones re-textured
    assert not torch.equal(fine.images, plain.images)
    assert torch.equal(fine.labels, plain.labels)  # same shuffled order, balanced classes
    again = make_shapes("train", n_per_class=10, image_size=32, seed=1, style="fine")
    assert torch.equal(fine.images, again.images)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"split": "valid"}, "split"),
        ({"class_ids": [20]}, "out of range"),
        ({"class_ids": [1, 1]}, "repeats"),
        ({"image_size": 8}, "image_size"),
        ({"style": "bold"}, "style"),
    ],
)
def test_shapes_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_shapes(**kwargs)


def test_shapes_default_size_is_fast():
    start = time.perf_counter()
    ds = make_shapes()  # 10 classes x 60 images at 64 px
    assert len(ds) == 600 and ds.image_shape == (3, 64, 64)
    assert time.perf_counter() - start < 3.0


def _small_cnn(num_classes: int) -> nn.Module:
    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]

    return nn.Sequential(
        *block(3, 16), nn.MaxPool2d(2), *block(16, 32), nn.MaxPool2d(2), *block(32, 64),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(64, num_classes),
    )


def test_small_cnn_learns_shapes_well_above_chance():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    train = make_shapes("train", n_per_class=100, image_size=32)
    test = make_shapes("test", n_per_class=20, image_size=32)
    model = _small_cnn(10)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = train.images.float() / 255, train.labels
    for _ in range(7):
        for batch in torch.randperm(len(y)).split(32):
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(test.images.float() / 255).argmax(1) == test.labels).float().mean().item()
    assert acc >= 0.3, f"held-out accuracy {acc:.2f} is not 3x chance (0.10)"
