from __future__ import annotations

import pytest
import torch

from tlhelpers.fewshot.sampler import EpisodeSampler, stack_episodes


def _data(n_classes: int = 8, per_class: int = 6, unequal: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    counts = [per_class + (c % 3 if unequal else 0) for c in range(n_classes)]
    labels = torch.cat([torch.full((k,), c) for c, k in enumerate(counts)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))]
    # Each image encodes its own index, so tests can recover which item was drawn.
    images = torch.zeros(len(labels), 1, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(len(labels)) % 256
    images[:, 0, 0, 1] = torch.arange(len(labels)) // 256
    return images, labels


def _ids(x: torch.Tensor) -> torch.Tensor:
    x = (x * 255).round().long()
    return x[..., 0, 0, 0] + 256 * x[..., 0, 0, 1]


@pytest.mark.parametrize("unequal", [False, True])
def test_episode_shapes_labels_and_disjointness(unequal: bool) -> None:
    images, labels = _data(unequal=unequal)
    sampler = EpisodeSampler(images, labels, n_way=5, k_shot=2, n_query=3)
    for seed in range(20):
        ep = sampler.sample(seed=seed)
        assert ep.support_x.shape == (10, 1, 4, 4) and ep.query_x.shape == (15, 1, 4, 4)
        assert ep.support_x.dtype == torch.float32
        assert ep.support_y.tolist() == [c for c in range(5) for _ in range(2)]
        assert ep.query_y.tolist() == [c for c in range(5) for _ in range(3)]
        assert len(set(ep.classes.tolist())) == 5  # no repeated class
        s_ids, q_ids = _ids(ep.support_x), _ids(ep.query_x)
        all_ids = torch.cat([s_ids, q_ids])
        assert len(set(all_ids.tolist())) == len(all_ids)  # no image twice, support/query disjoint
        # Each relabelled class holds images of the original class it names.
        assert torch.equal(labels[s_ids], ep.classes[ep.support_y])
        assert torch.equal(labels[q_ids], ep.classes[ep.query_y])


def test_seeded_episodes_are_reproducible_and_vary() -> None:
    images, labels = _data()
    sampler = EpisodeSampler(images, labels, n_way=3, k_shot=1, n_query=2)
    a = list(sampler.episodes(5, seed=7))
    b = list(sampler.episodes(5, seed=7))
    for x, y in zip(a, b):
        assert torch.equal(x.support_x, y.support_x) and torch.equal(x.classes, y.classes)
    c = list(sampler.episodes(5, seed=8))
    assert any(not torch.equal(x.query_x, y.query_x) for x, y in zip(a, c))
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(sampler.sample_batch(3, g1).query_x, sampler.sample_batch(3, g2).query_x)


def test_sample_batch_stacks_tasks() -> None:
    images, labels = _data()
    batch = EpisodeSampler(images, labels, n_way=4, k_shot=1, n_query=2).sample_batch(3)
    assert batch.support_x.shape == (3, 4, 1, 4, 4) and batch.num_tasks == 3
    assert batch.task(1).query_y.shape == (8,)


def test_accepts_a_dataset_with_images_and_labels() -> None:
    images, labels = _data()

    class DS:
        pass

    ds = DS()
    ds.images, ds.labels = images, labels
    assert EpisodeSampler(ds, n_way=2, k_shot=1, n_query=1).num_classes == 8


def test_errors_name_the_problem() -> None:
    images, labels = _data(n_classes=4, per_class=5)
    with pytest.raises(ValueError, match="n_way=5"):
        EpisodeSampler(images, labels, n_way=5, k_shot=1, n_query=1)
    with pytest.raises(ValueError, match="k_shot\\+n_query=6"):
        EpisodeSampler(images, labels, n_way=2, k_shot=1, n_query=5)
    with pytest.raises(ValueError, match="uint8"):
        EpisodeSampler(images.float(), labels, n_way=2, k_shot=1, n_query=1)
    with pytest.raises(ValueError, match="k_shot=0"):
        EpisodeSampler(images, labels, n_way=2, k_shot=0, n_query=1)
    with pytest.raises(ValueError, match="differ in size"):
        s1 = EpisodeSampler(images, labels, n_way=2, k_shot=1, n_query=1)
        s2 = EpisodeSampler(images, labels, n_way=3, k_shot=1, n_query=1)
        stack_episodes([s1.sample(seed=0), s2.sample(seed=0)])


def test_classes_too_small_are_skipped_not_sampled() -> None:
    images, labels = _data(n_classes=6, per_class=3, unequal=True)  # counts 3,4,5,3,4,5
    sampler = EpisodeSampler(images, labels, n_way=2, k_shot=2, n_query=2)
    assert sorted(sampler.class_ids.tolist()) == [1, 2, 4, 5]
    for seed in range(10):
        assert set(sampler.sample(seed=seed).classes.tolist()) <= {1, 2, 4, 5}


def test_state_dict_restores_the_episode_stream() -> None:
    images, labels = _data()
    sampler = EpisodeSampler(images, labels, n_way=3, k_shot=1, n_query=2, seed=4)
    sampler.sample_batch(2)
    state = sampler.state_dict()
    expected = sampler.sample_batch(3).query_x
    other = EpisodeSampler(images, labels, n_way=3, k_shot=1, n_query=2, seed=9)  # another stream, restored
    other.load_state_dict(state)
    assert torch.equal(other.sample_batch(3).query_x, expected)
    again = EpisodeSampler(images, labels, n_way=3, k_shot=1, n_query=2).manual_seed(4)  # the same seed, restarted
    again.sample_batch(2)
    assert torch.equal(again.sample_batch(3).query_x, expected)
    assert not torch.equal(again.sample_batch(3).query_x, expected)  # the stream moves on
