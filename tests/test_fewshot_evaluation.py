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


def _labelled_set():
    from tlhelpers.data.tensor_dataset import ImageTensorDataset

    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (48, 1, 4, 4), dtype=torch.uint8, generator=gen)
    return ImageTensorDataset(images, torch.arange(8).repeat_interleave(6), [f"c{i}" for i in range(8)])


def test_compare_methods_scores_every_method_on_the_same_episodes() -> None:
    from tlhelpers.fewshot.evaluation import compare_methods, episode_fingerprint

    seen: dict[str, list[torch.Tensor]] = {"a": [], "b": []}

    def recorder(name):
        def predict(ep):
            seen[name].append(torch.cat([ep.classes.float(), ep.support_x.flatten(), ep.query_x.flatten()]))
            return torch.nn.functional.one_hot(ep.query_y, ep.n_way).float() if name == "a" else torch.zeros(len(ep.query_y), ep.n_way)
        return predict

    table = compare_methods({"a": recorder("a"), "b": recorder("b")}, _labelled_set(), n_way=3, shots=(1, 2),
                            n_query=2, num_episodes=5, seed=4)
    assert set(table) == {"a", "b"} and set(table["a"]) == {1, 2}
    assert table["a"][1].mean == 1.0 and table["b"][2].mean == pytest.approx(1 / 3)
    assert len(seen["a"]) == len(seen["b"]) == 10
    assert all(torch.equal(x, y) for x, y in zip(seen["a"], seen["b"]))
    sampler = EpisodeSampler(_labelled_set(), n_way=3, k_shot=1, n_query=2)
    assert episode_fingerprint(sampler, 5, 4) == episode_fingerprint(sampler, 5, 4)
    assert episode_fingerprint(sampler, 5, 4) != episode_fingerprint(sampler, 5, 5)


def test_comparison_from_reports_builds_the_table_and_refuses_mixed_episodes() -> None:
    from tlhelpers.fewshot.evaluation import comparison_from_reports

    def report(method, way, shot, mean, fingerprint="f1"):
        acc = {"mean": mean, "ci95": 0.01, "num_episodes": 600}
        return {"config": {"method": method, "way": way, "shot": shot}, "accuracy": acc,
                "pixel_baseline": {**acc, "mean": 0.4}, "episodes": {"fingerprint": fingerprint}}

    table = comparison_from_reports([report("maml", 5, 5, 0.9), report("maml", 5, 1, 0.8),
                                     report("protonet", 5, 1, 0.95), report("protonet", 20, 1, 0.85)])
    assert list(table["maml"]) == [1, 5] and table["maml"][1].mean == 0.8
    assert table["protonet"] == {1: table["protonet"][1]} and table["pixels"][1].mean == 0.4
    old = report("reptile", 5, 1, 0.7)
    del old["episodes"]  # an older report without a fingerprint is left out
    assert "reptile" not in comparison_from_reports([old, report("maml", 5, 1, 0.8)])
    with pytest.raises(ValueError, match="different episodes"):
        comparison_from_reports([report("maml", 5, 1, 0.8), report("protonet", 5, 1, 0.9, fingerprint="f2")])
