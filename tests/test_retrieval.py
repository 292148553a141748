from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from tlhelpers.transfer.retrieval import cosine_neighbors, precision_at_k, show_neighbors

matplotlib.use("Agg")


def test_neighbors_agree_with_sklearn_cosine():
    gen = torch.Generator().manual_seed(0)
    gallery = torch.randn(50, 8, generator=gen)
    queries = torch.randn(5, 8, generator=gen)
    sims, idx = cosine_neighbors(queries, gallery, k=4)
    dist, ref = NearestNeighbors(n_neighbors=4, metric="cosine").fit(gallery.numpy()).kneighbors(queries.numpy())
    assert np.array_equal(idx.numpy(), ref)
    np.testing.assert_allclose(sims.numpy(), 1 - dist, atol=1e-5)
    assert torch.all(sims[:, :-1] >= sims[:, 1:])


def test_exclude_self_and_scale_invariance():
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(20, 6, generator=gen)
    _, idx = cosine_neighbors(feats[3], feats, k=5, exclude_self=True, query_indices=[3])
    assert 3 not in idx[0].tolist()
    _, same = cosine_neighbors(feats[3] * 10, feats, k=5, exclude_self=True, query_indices=[3])
    assert torch.equal(idx, same)


def test_precision_at_k_separates_clustered_from_random():
    gen = torch.Generator().manual_seed(2)
    labels = torch.arange(4).repeat_interleave(10)
    clustered = torch.randn(4, 16, generator=gen)[labels] * 5 + torch.randn(40, 16, generator=gen)
    assert precision_at_k(clustered, labels, k=5) > 0.9
    assert precision_at_k(torch.randn(40, 16, generator=gen), labels, k=5) < 0.5


def test_bad_input_and_figure():
    feats = torch.randn(6, 3)
    with pytest.raises(ValueError, match="out of range"):
        cosine_neighbors(feats, feats, k=6, exclude_self=True)
    with pytest.raises(ValueError, match="same D"):
        cosine_neighbors(torch.randn(2, 4), feats)
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    sims, idx = cosine_neighbors(feats[0], feats, k=3, exclude_self=True)
    fig = show_neighbors(images, 0, idx[0], sims[0], labels=torch.tensor([0, 1, 0, 1, 0, 1]), class_names=["a", "b"])
    assert len(fig.axes) == 4 and fig.axes[0].get_title().startswith("query")


def test_show_neighbors_is_closed_and_marks_matches_without_colour():
    import matplotlib.pyplot as plt

    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    labels = torch.tensor([0, 0, 1, 0, 1])
    fig = show_neighbors(images, 0, [1, 2], torch.tensor([0.99951, 0.99873]), labels=labels, class_names=["a", "b"])
    assert not plt.fignum_exists(fig.number)
    match, miss = (ax.get_title() for ax in fig.axes[1:])
    assert "\u2713" in match and "a" in match and "0.9995" not in match and "1.000" in match
    assert "\u2717" in miss and "0.999" in miss  # three decimals: near-1 cosines stay apart
    assert fig.axes[1].title.get_color() != fig.axes[2].title.get_color()
