from __future__ import annotations

import torch

from tlhelpers.fewshot.baseline import episode_features, linear_probe_predict
from tlhelpers.fewshot.sampler import EpisodeSampler


def _separable_sampler() -> EpisodeSampler:
    # Class c lights up pixel row c: trivially separable with the identity as "backbone".
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 40, (60, 1, 6, 6), dtype=torch.uint8, generator=gen)
    labels = torch.arange(6).repeat_interleave(10)
    images[torch.arange(60), 0, labels] = 255
    return EpisodeSampler(images, labels, n_way=5, k_shot=1, n_query=4)


def test_linear_probe_solves_a_separable_episode() -> None:
    episode = _separable_sampler().sample(seed=0)
    logits = linear_probe_predict(lambda x: x.flatten(1), episode)
    assert logits.shape == (20, 5)
    assert (logits.argmax(1) == episode.query_y).float().mean() == 1.0


def test_features_are_unit_norm_and_split_support_query() -> None:
    episode = _separable_sampler().sample(seed=1)
    s, q = episode_features(lambda x: x.flatten(1), episode)
    assert s.shape == (5, 36) and q.shape == (20, 36)
    torch.testing.assert_close(s.norm(dim=1), torch.ones(5))
