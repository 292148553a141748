from __future__ import annotations

import math

import pytest
import torch

from tlhelpers.fewshot.evaluation import confidence_interval, evaluate_episodes
from tlhelpers.fewshot.sampler import EpisodeSampler


def _sampler() -> EpisodeSampler:
    images = torch.zeros(40, 1, 4, 4, dtype=torch.uint8)
    return EpisodeSampler(images, torch.arange(8).repeat_interleave(5), n_way=4, k_shot=1, n_query=2)


def test_confidence_interval_matches_the_formula() -> None:
    accs = [0.5, 0.75, 1.0, 0.25, 0.5]
    n = len(accs)
    mean = sum(accs) / n
    std = math.sqrt(sum((a - mean) ** 2 for a in accs) / (n - 1))
    m, ci = confidence_interval(accs)
    assert m == pytest.approx(mean) and ci == pytest.approx(1.96 * std / math.sqrt(n))
    with pytest.raises(ValueError, match="at least 2"):
        confidence_interval([1.0])


def test_oracle_scores_one_and_constant_guess_scores_chance() -> None:
    sampler = _sampler()

    def oracle(ep):
        return torch.nn.functional.one_hot(ep.query_y, ep.n_way).float()

    def always_zero(ep):
        logits = torch.zeros(len(ep.query_y), ep.n_way)
        logits[:, 0] = 1
        return logits

    perfect = evaluate_episodes(oracle, sampler, num_episodes=20, progress=False)
    assert perfect.mean == 1.0 and perfect.ci95 == 0.0 and len(perfect.accs) == 20
    chance = evaluate_episodes(always_zero, sampler, num_episodes=20, progress=False)
    assert chance.mean == pytest.approx(0.25)
    assert "episodes" in str(chance) and chance.to_dict()["num_episodes"] == 20


def test_same_seed_same_episodes_and_bad_output_shape() -> None:
    sampler = _sampler()
    seen: list[list[list[int]]] = [[], []]

    def record(i):
        def fn(ep):
            seen[i].append(ep.classes.tolist())
            return torch.zeros(len(ep.query_y), ep.n_way)
        return fn

    evaluate_episodes(record(0), sampler, num_episodes=5, seed=3, progress=False)
    evaluate_episodes(record(1), sampler, num_episodes=5, seed=3, progress=False)
    assert seen[0] == seen[1]
    with pytest.raises(ValueError, match="expected"):
        evaluate_episodes(lambda ep: torch.zeros(3, 3), sampler, num_episodes=2, progress=False)
    with pytest.raises(ValueError, match="num_episodes"):
        evaluate_episodes(lambda ep: ep, sampler, num_episodes=1, progress=False)
