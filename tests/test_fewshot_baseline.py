from __future__ import annotations

import pytest
import torch

from tlhelpers.fewshot.baseline import episode_features, linear_probe_predict, pixel_predict
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


def _reference_pixel_logits(episode, rule: str) -> torch.Tensor:
    """Explicit loops over queries, classes and support images (independent of the package)."""
    s = episode.support_x.flatten(1).double()
    q = episode.query_x.flatten(1).double()
    out = torch.empty(len(q), episode.n_way, dtype=torch.float64)
    for i in range(len(q)):
        for c in range(episode.n_way):
            members = s[episode.support_y == c]
            if rule == "prototype":
                out[i, c] = -((q[i] - members.mean(0)) ** 2).sum()
            else:
                out[i, c] = max(-((q[i] - m) ** 2).sum() for m in members)
    return out


@pytest.mark.parametrize("rule", ["prototype", "neighbour"])
@pytest.mark.parametrize("k_shot", [1, 3])
def test_pixel_baseline_matches_explicit_distances(rule: str, k_shot: int) -> None:
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (60, 1, 6, 6), dtype=torch.uint8, generator=gen)
    sampler = EpisodeSampler(images, torch.arange(6).repeat_interleave(10), n_way=4, k_shot=k_shot, n_query=3)
    episode = sampler.sample(seed=2)
    logits = pixel_predict(episode, rule)
    assert logits.shape == (12, 4)
    ref = _reference_pixel_logits(episode, rule)
    assert torch.equal(logits.argmax(1), ref.argmax(1))
    torch.testing.assert_close(logits.double(), ref, rtol=1e-4, atol=1e-3)


def test_pixel_baseline_solves_the_separable_episode_and_rejects_unknown_rules() -> None:
    episode = _separable_sampler().sample(seed=0)
    assert (pixel_predict(episode).argmax(1) == episode.query_y).float().mean() == 1.0
    torch.testing.assert_close(pixel_predict(episode, "neighbour"), pixel_predict(episode, "prototype"))  # 1 shot
    with pytest.raises(ValueError, match="prototype, neighbour"):
        pixel_predict(episode, "cosine")
