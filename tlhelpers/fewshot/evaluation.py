"""Few-shot evaluation: mean accuracy with a 95 % confidence interval over test episodes.

The standard protocol draws 600 (or more) test episodes, measures query accuracy on each, and
reports ``mean +- 1.96 * std / sqrt(episodes)``. The episodes come from a seed, so every method is
scored on exactly the same tasks.

Example:
    >>> result = evaluate_episodes(lambda ep: protonet_predict(model, ep), sampler, num_episodes=600)
    >>> print(result)   # e.g. "98.6 +- 0.2 % (600 episodes)"
    >>> table = compare_methods({"ProtoNet": ..., "pixels": pixel_predict}, test_set, n_way=5, shots=(1, 5))
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from tqdm.auto import tqdm

from tlhelpers.data.tensor_dataset import ImageTensorDataset
from tlhelpers.fewshot.sampler import Episode, EpisodeSampler

#: ``{method: {k_shot: result}}``, every method scored on the same episodes.
Comparison = dict[str, dict[int, "EvalResult"]]


@dataclass
class EvalResult:
    """Accuracy over episodes: ``mean`` and ``ci95`` in [0, 1], the per-episode values and speed."""

    mean: float
    ci95: float
    num_episodes: int
    episodes_per_s: float = math.nan
    accs: list[float] = field(default_factory=list, repr=False)

    def __str__(self) -> str:
        return f"{100 * self.mean:.1f} +- {100 * self.ci95:.1f} % ({self.num_episodes} episodes)"

    def to_dict(self) -> dict[str, float]:
        """JSON-ready summary (without the per-episode values)."""
        return {"mean": self.mean, "ci95": self.ci95, "num_episodes": self.num_episodes, "episodes_per_s": self.episodes_per_s}


def confidence_interval(accs: list[float] | Tensor) -> tuple[float, float]:
    """Mean and the half-width of its normal-approximation 95 % interval, ``1.96 * std / sqrt(n)``.

    Raises:
        ValueError: with fewer than two values (no spread to estimate).
    """
    values = torch.as_tensor(accs, dtype=torch.float64).flatten()
    if len(values) < 2:
        raise ValueError(f"need at least 2 episodes for a confidence interval, got {len(values)}; evaluate more episodes.")
    return float(values.mean()), float(1.96 * values.std(unbiased=True) / math.sqrt(len(values)))


def evaluate_episodes(
    predict_fn: Callable[[Episode], Tensor],
    sampler: EpisodeSampler,
    num_episodes: int = 600,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    desc: str = "eval",
) -> EvalResult:
    """Query accuracy of ``predict_fn`` over ``num_episodes`` reproducible episodes.

    Args:
        predict_fn: maps an episode to query logits ``(N*Q, N)`` (e.g. ``protonet_predict``).
        sampler: the test-class sampler; its ``n_way``/``k_shot``/``n_query`` define the setting.
        num_episodes: episodes to average (600 is the standard protocol).
        seed: seed of the episodes; the same seed gives the same tasks to every method.
        device: where to move each episode; None leaves it where the sampler builds it.
        progress: show a tqdm bar.
        desc: the bar's label.

    Returns:
        The mean accuracy with its 95 % interval.

    Raises:
        ValueError: if ``num_episodes`` < 2 or ``predict_fn`` returns logits of the wrong shape.
    """
    if num_episodes < 2:
        raise ValueError(f"num_episodes={num_episodes} must be at least 2 for a confidence interval.")
    accs = []
    start = time.perf_counter()
    for episode in tqdm(sampler.episodes(num_episodes, seed), total=num_episodes, desc=desc, disable=not progress, leave=False):
        if device is not None:
            episode = episode.to(device)
        logits = predict_fn(episode)
        if logits.shape != (len(episode.query_y), episode.n_way):
            raise ValueError(
                f"predict_fn returned shape {tuple(logits.shape)}, expected {(len(episode.query_y), episode.n_way)} "
                "(one row per query, one column per class)."
            )
        accs.append(float((logits.argmax(1).cpu() == episode.query_y.cpu()).float().mean()))
    elapsed = time.perf_counter() - start
    mean, ci = confidence_interval(accs)
    return EvalResult(mean, ci, num_episodes, num_episodes / max(elapsed, 1e-9), accs)


def episode_fingerprint(sampler: EpisodeSampler, num_episodes: int, seed: int) -> str:
    """A short hash of the episodes ``sampler.episodes(num_episodes, seed)`` draws (classes and images).

    Two runs that report the same fingerprint were scored on exactly the same test tasks.
    """
    h = hashlib.sha1(f"{sampler.n_way}/{sampler.k_shot}/{sampler.n_query}".encode())
    for episode in sampler.episodes(num_episodes, seed):
        for t in (episode.classes, episode.support_x, episode.query_x):
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def compare_methods(
    predictors: Mapping[str, Callable[[Episode], Tensor]],
    test_set: ImageTensorDataset,
    *,
    n_way: int,
    shots: Sequence[int],
    n_query: int = 15,
    num_episodes: int = 600,
    seed: int = 1,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> Comparison:
    """Score every method on the same seeded episodes, for each number of shots.

    Args:
        predictors: method name -> ``predict_fn`` (episode -> query logits).
        test_set: the test classes.
        n_way: classes per episode.
        shots: the ``k_shot`` values to compare.
        n_query: queries per class.
        num_episodes: episodes per setting.
        seed: seed of the episodes, shared by all methods.
        device: where the episodes are built.
        progress: show a bar per method and setting.

    Returns:
        ``{method: {k_shot: EvalResult}}``.
    """
    table: Comparison = {name: {} for name in predictors}
    for k_shot in shots:
        sampler = EpisodeSampler(test_set, n_way=n_way, k_shot=k_shot, n_query=n_query, device=device)
        for name, predict in predictors.items():
            table[name][k_shot] = evaluate_episodes(
                predict, sampler, num_episodes=num_episodes, seed=seed, progress=progress, desc=f"{name} {k_shot}-shot"
            )
    return table


def comparison_from_reports(reports: Iterable[Mapping], n_way: int = 5) -> Comparison:
    """The ``{method: {k_shot: result}}`` table of few-shot benchmark JSON reports (``benchmarks/fewshot.py``).

    Only ``n_way``-way reports that record their episodes' fingerprint are kept (older reports,
    scored on unknown episodes, are left out). Each report's pixel baseline (scored on the same
    episodes) becomes the method ``"pixels"``.

    Raises:
        ValueError: if the reports were scored on different episodes for the same number of shots
            (their ``episodes.fingerprint`` differ), naming the fix.
    """
    table: Comparison = {}
    seen: dict[int, str] = {}
    for report in reports:
        config = report["config"]
        if int(config["way"]) != n_way:
            continue
        k_shot = int(config["shot"])
        fingerprint = (report.get("episodes") or {}).get("fingerprint")
        if fingerprint is None:
            continue
        if seen.setdefault(k_shot, fingerprint) != fingerprint:
            raise ValueError(
                f"{n_way}-way {k_shot}-shot reports were scored on different episodes; rerun them with the same "
                "data, seed, queries and episode count."
            )
        for name, acc in ((config["method"], report["accuracy"]), ("pixels", report.get("pixel_baseline"))):
            if acc is not None:
                table.setdefault(name, {})[k_shot] = EvalResult(acc["mean"], acc["ci95"], int(acc["num_episodes"]))
    return {name: dict(sorted(row.items())) for name, row in table.items()}
