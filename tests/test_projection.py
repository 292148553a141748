from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from tlhelpers.transfer.projection import embed_2d, neighbor_agreement, scatter_2d

matplotlib.use("Agg")


def clusters(seed=0):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(3).repeat_interleave(15)
    return torch.randn(3, 20, generator=gen)[labels] * 6 + torch.randn(45, 20, generator=gen), labels


def test_pca_matches_sklearn_up_to_sign():
    x, _ = clusters()
    points = embed_2d(x, method="pca", standardize=False)
    ref = PCA(n_components=2).fit_transform(x.numpy())
    np.testing.assert_allclose(np.abs(points), np.abs(ref), rtol=1e-3, atol=1e-3)


def test_tsne_keeps_clusters_apart_and_is_seeded():
    x, labels = clusters()
    a = embed_2d(x, method="tsne", seed=0)
    assert a.shape == (45, 2)
    np.testing.assert_allclose(a, embed_2d(x, method="tsne", seed=0))
    centers = np.stack([a[labels.numpy() == c].mean(0) for c in range(3)])
    spread = max(np.linalg.norm(a[labels.numpy() == c] - centers[c], axis=1).mean() for c in range(3))
    gap = min(np.linalg.norm(centers[i] - centers[j]) for i in range(3) for j in range(i + 1, 3))
    assert gap > 2 * spread


def test_scatter_colours_classes_and_marks_groups():
    x, labels = clusters()
    points = embed_2d(x, method="pca")
    groups = (torch.arange(45) % 2)
    fig = scatter_2d(points, labels, ["a", "b", "c"], groups=groups, group_names=["source", "target"], title="t")
    ax = fig.axes[0]
    assert ax.get_title() == "t" and len(ax.collections) == 6
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {"a (source)", "c (target)"}


def test_neighbor_agreement_matches_sklearn_neighbours():
    from sklearn.neighbors import NearestNeighbors

    x, labels = clusters()
    points = embed_2d(x, method="pca")
    _, idx = NearestNeighbors(n_neighbors=6).fit(points).kneighbors(points)  # the first is the point itself
    lab = labels.numpy()
    expected = (lab[idx[:, 1:]] == lab[:, None]).mean()
    assert neighbor_agreement(points, labels, k=5) == pytest.approx(expected)
    assert expected > 0.9  # well-separated clusters
    shuffled = labels[torch.randperm(45, generator=torch.Generator().manual_seed(0))]
    assert neighbor_agreement(points, shuffled, k=5) < 0.6  # the same map with labels that ignore it


def test_bad_input():
    with pytest.raises(ValueError, match="unknown"):
        embed_2d(torch.randn(5, 3), method="umap")
    with pytest.raises(ValueError, match="at least 3 rows"):
        embed_2d(torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        scatter_2d(np.zeros((4, 2)), [0, 1, 2])
    with pytest.raises(ValueError, match="out of range"):
        neighbor_agreement(np.zeros((4, 2)), [0, 1, 0, 1], k=4)


def test_cross_neighbor_agreement_matches_sklearn_neighbours():
    from sklearn.neighbors import NearestNeighbors

    from tlhelpers.transfer.projection import cross_neighbor_agreement

    gen = torch.Generator().manual_seed(4)
    ref, ref_labels = torch.randn(40, 5, generator=gen), torch.arange(40) % 4
    query, query_labels = torch.randn(15, 5, generator=gen), torch.arange(15) % 4
    _, idx = NearestNeighbors(n_neighbors=3).fit(ref.numpy()).kneighbors(query.numpy())
    expected = (ref_labels.numpy()[idx] == query_labels.numpy()[:, None]).mean()
    assert cross_neighbor_agreement(query, query_labels, ref, ref_labels, k=3) == pytest.approx(expected)
    # queries that are copies of reference points of their class sit inside their clusters
    centres = torch.randn(4, 5, generator=gen) * 20
    cluster = centres[ref_labels] + torch.randn(40, 5, generator=gen)
    assert cross_neighbor_agreement(cluster[:8] + 0.01, ref_labels[:8], cluster, ref_labels, k=5) == 1.0
    with pytest.raises(ValueError, match="out of range"):
        cross_neighbor_agreement(query, query_labels, ref, ref_labels, k=41)
    with pytest.raises(ValueError, match="same D"):
        cross_neighbor_agreement(query[:, :2], query_labels, ref, ref_labels)


def test_scatter_closes_its_own_figure_only():
    import matplotlib.pyplot as plt

    x, labels = clusters()
    points = embed_2d(x, method="pca")
    fig = scatter_2d(points, labels, ["a", "b", "c"])
    assert not plt.fignum_exists(fig.number) and fig.axes[0].get_legend() is not None
    own, ax = plt.subplots()
    assert scatter_2d(points, labels, ax=ax) is own and plt.fignum_exists(own.number)  # the caller's figure
    plt.close(own)
