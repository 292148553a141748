from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tlhelpers.course.digits import (
    blend_with_photos,
    font_files,
    make_font_digits,
    make_mnistm_style,
    sample_photos,
)


def test_font_digits_format_and_determinism():
    ds = make_font_digits("train", n=50, image_size=28, seed=1)
    assert ds.images.shape == (50, 3, 28, 28) and ds.images.dtype == torch.uint8
    assert ds.classes == [str(d) for d in range(10)]
    assert torch.bincount(ds.labels, minlength=10).tolist() == [5] * 10
    assert torch.equal(ds.images[:, 0], ds.images[:, 2])  # grey replicated
    # white digit on black: the border is dark, some pixels are bright
    assert ds.images[:, :, 0, :].float().mean() < 10 and ds.images.max() > 200
    again = make_font_digits("train", n=50, image_size=28, seed=1)
    assert torch.equal(ds.images, again.images) and torch.equal(ds.labels, again.labels)
    test = make_font_digits("test", n=50, image_size=28, seed=1)
    assert not torch.equal(ds.images, test.images)
    assert len(font_files()) >= 5


def test_blend_with_photos_matches_reference():
    gen = torch.Generator().manual_seed(0)
    digits = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8)
    photo = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    out = blend_with_photos(digits, [photo], gen)
    assert out.shape == (6, 3, 8, 8) and out.dtype == torch.uint8
    # independent reference: each output equals |crop - digit| for some crop of the photo
    ref = torch.from_numpy(photo).permute(2, 0, 1).int()
    for img, dig in zip(out, digits, strict=True):
        found = False
        for y in range(20 - 8 + 1):
            for x in range(30 - 8 + 1):
                expected = (ref[:, y:y + 8, x:x + 8] - dig.int()).abs()
                if torch.equal(expected.to(torch.uint8), img):
                    found = True
                    break
            if found:
                break
        assert found
    # (N, H, W) input and a (P, 3, H, W) tensor of photos are accepted too
    out2 = blend_with_photos(digits[:, 0], torch.from_numpy(photo).permute(2, 0, 1)[None], gen)
    assert out2.shape == (6, 3, 8, 8)


def test_blend_rejects_small_photos():
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="smaller"):
        blend_with_photos(torch.zeros(2, 8, 8, dtype=torch.uint8), [np.zeros((4, 40, 3), np.uint8)], gen)
    with pytest.raises(ValueError, match="empty"):
        blend_with_photos(torch.zeros(2, 8, 8, dtype=torch.uint8), [], gen)


def test_sample_photos_are_colour_uint8():
    photos = sample_photos()
    assert len(photos) == 2
    assert all(p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3 for p in photos)


def test_mnistm_style_is_coloured_and_deterministic():
    ds = make_mnistm_style("train", n=40, image_size=32, seed=0)
    assert ds.images.shape == (40, 3, 32, 32) and ds.classes == [str(d) for d in range(10)]
    assert not torch.equal(ds.images[:, 0], ds.images[:, 1])  # colour, not grey
    assert torch.equal(ds.images, make_mnistm_style("train", n=40, image_size=32, seed=0).images)
    assert not torch.equal(ds.images, make_mnistm_style("test", n=40, image_size=32, seed=0).images)


def _small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
    )


def _train_and_score(train, test, epochs: int) -> float:
    torch.manual_seed(0)
    model = _small_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = train.images.float() / 255, train.labels
    for _ in range(epochs):
        for batch in torch.randperm(len(y)).split(32):
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(test.images.float() / 255).argmax(1)
    return (pred == test.labels).float().mean().item()


@pytest.mark.parametrize("make", [make_font_digits, make_mnistm_style])
def test_small_cnn_learns_digits_well_above_chance(make):
    torch.set_num_threads(1)
    train = make("train", n=1000, image_size=28)
    test = make("test", n=300, image_size=28)
    acc = _train_and_score(train, test, epochs=3)
    assert acc >= 0.3, f"held-out accuracy {acc:.2f} is not 3x chance (0.10)"
