from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

from tlhelpers.course.glyphs import make_glyphs


def test_glyphs_format_names_and_polarity():
    ds = make_glyphs(n_classes=45, n_per_class=3, image_size=28, seed=0)
    assert ds.images.shape == (135, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert ds.labels.tolist() == torch.arange(45).repeat_interleave(3).tolist()
    assert ds.classes[0] == "alphabet00/char000" and ds.classes[44] == "alphabet02/char004"
    # dark strokes on white: the background is white and strokes cover a minority of pixels
    dark = (ds.images < 128).float().mean(dim=(1, 2, 3))
    assert (dark > 0.02).all() and (dark < 0.4).all()
    assert ds.images[:, :, 0, :].float().mean() > 240


def test_glyphs_deterministic_and_prefix_stable():
    a = make_glyphs(n_classes=10, n_per_class=4, seed=5)
    assert torch.equal(a.images, make_glyphs(n_classes=10, n_per_class=4, seed=5).images)
    assert not torch.equal(a.images, make_glyphs(n_classes=10, n_per_class=4, seed=6).images)
    bigger = make_glyphs(n_classes=30, n_per_class=4, seed=5)
    assert torch.equal(a.images, bigger.images[:40])


def test_drawings_of_a_class_vary():
    ds = make_glyphs(n_classes=3, n_per_class=5)
    first = ds.images[:5].float()
    assert (first - first[0]).abs().sum(dim=(1, 2, 3))[1:].min() > 0


@pytest.mark.parametrize("kwargs", [{"n_classes": 0}, {"n_per_class": 0}, {"image_size": 8}])
def test_glyphs_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_glyphs(**kwargs)


def test_glyphs_default_size_is_fast():
    start = time.perf_counter()
    ds = make_glyphs()
    assert len(ds) == 4000 and ds.num_classes == 200
    assert time.perf_counter() - start < 8.0


def _episode_accuracy(features: torch.Tensor, labels: torch.Tensor, n_way: int, k_shot: int,
                      n_query: int, episodes: int) -> float:
    """Nearest class mean (a ProtoNet without training) over random episodes."""
    gen = torch.Generator().manual_seed(0)
    num_classes = int(labels.max()) + 1
    correct = total = 0
    for _ in range(episodes):
        classes = torch.randperm(num_classes, generator=gen)[:n_way]
        support, query = [], []
        for c in classes:
            idx = (labels == c).nonzero().flatten()
            idx = idx[torch.randperm(len(idx), generator=gen)]
            support.append(features[idx[:k_shot]].mean(0))
            query.append(features[idx[k_shot:k_shot + n_query]])
        prototypes = torch.stack(support)
        queries = torch.cat(query)
        truth = torch.arange(n_way).repeat_interleave(n_query)
        pred = torch.cdist(queries, prototypes).argmin(1)
        correct += int((pred == truth).sum())
        total += len(truth)
    return correct / total


def test_glyph_classes_are_separable_but_not_trivial():
    torch.set_num_threads(1)
    ds = make_glyphs(n_classes=60, n_per_class=20, image_size=28, seed=1)
    # blurred, downsampled ink maps as fixed features
    ink = 1 - ds.images.float() / 255
    features = F.avg_pool2d(F.avg_pool2d(ink, 3, 1, 1), 2).flatten(1)
    acc = _episode_accuracy(features, ds.labels, n_way=5, k_shot=5, n_query=5, episodes=100)
    assert acc >= 0.6, f"5-way nearest-class-mean accuracy {acc:.2f} is not 3x chance (0.20)"
    raw = ink.flatten(1)
    acc_1shot = _episode_accuracy(raw, ds.labels, n_way=20, k_shot=1, n_query=5, episodes=50)
    assert acc_1shot < 0.95, f"20-way 1-shot raw-pixel accuracy {acc_1shot:.2f}: classes too easy"
