from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tlhelpers.fewshot.protonet import (
    protonet_logits,
    protonet_step,
    prototypes,
    squared_distance_logits,
)
from tlhelpers.fewshot.sampler import EpisodeSampler
from tlhelpers.models.conv4 import BatchStatNorm2d, Conv4, exact_batchnorm


def _sampler(n_way: int = 3, k_shot: int = 2) -> EpisodeSampler:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (60, 1, 28, 28), dtype=torch.uint8, generator=gen)
    return EpisodeSampler(images, torch.arange(6).repeat_interleave(10), n_way=n_way, k_shot=k_shot, n_query=3)


def test_logits_are_negative_squared_distances_to_class_means() -> None:
    torch.manual_seed(0)
    model = Conv4(hidden=8)
    episode = _sampler().sample(seed=3)
    logits = protonet_logits(model, episode)
    emb = model(torch.cat([episode.support_x, episode.query_x]))
    s, q = emb[: len(episode.support_y)], emb[len(episode.support_y):]
    expected = torch.empty(len(q), 3)
    for c in range(3):
        mean = s[episode.support_y == c].mean(0)
        for i in range(len(q)):
            expected[i, c] = -((q[i] - mean) ** 2).sum()
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)


def test_prototypes_handle_unordered_labels_and_reject_missing_class() -> None:
    emb = torch.tensor([[0.0, 0.0], [2.0, 2.0], [4.0, 0.0], [6.0, 2.0]])
    y = torch.tensor([1, 0, 1, 0])
    torch.testing.assert_close(prototypes(emb, y, 2), torch.tensor([[4.0, 2.0], [2.0, 0.0]]))
    with pytest.raises(ValueError, match="cover each class"):
        prototypes(emb, torch.tensor([0, 0, 0, 0]), 2)
    assert (squared_distance_logits(emb, emb) <= 0).all()


def test_step_fills_every_gradient_and_training_reduces_loss() -> None:
    torch.manual_seed(0)
    model = Conv4(hidden=8)
    sampler = _sampler()
    batch = sampler.sample_batch(2, torch.Generator().manual_seed(0))
    out = protonet_step(model, batch)
    assert out.grads is None and all(p.grad is None for p in model.parameters())  # the loop back-propagates
    # The loss is the mean over tasks of each task's query cross-entropy, computed independently.
    ref = torch.stack([F.cross_entropy(protonet_logits(model, batch.task(t)), batch.task(t).query_y) for t in range(2)])
    torch.testing.assert_close(out.loss, ref.mean())
    assert torch.equal(out.targets, batch.query_y.reshape(-1)) and out.logits.shape == (len(out.targets), 3)
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(15):
        opt.zero_grad()
        protonet_step(model, batch).loss.backward()
        opt.step()
    assert protonet_step(model, batch).loss < out.loss


@pytest.mark.parametrize("exact", [False, True])
def test_batch_stat_norm_matches_torch_batchnorm(exact: bool) -> None:
    x = torch.randn(6, 4, 5, 5, requires_grad=True, dtype=torch.float64)
    ours, ref = BatchStatNorm2d(4).double(), nn.BatchNorm2d(4, track_running_stats=False).double()
    ours.exact = exact
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        ref.weight.copy_(ours.weight)
    torch.testing.assert_close(ours(x), ref(x))
    g1 = torch.autograd.grad(ours(x).pow(3).sum(), x, create_graph=True)[0]
    g2 = torch.autograd.grad(ref(x).pow(3).sum(), x, create_graph=True)[0]
    torch.testing.assert_close(g1, g2)
    # second derivatives (outside vmap) agree too
    h1 = torch.autograd.grad(g1.pow(2).sum(), x)[0]
    h2 = torch.autograd.grad(g2.pow(2).sum(), x)[0]
    torch.testing.assert_close(h1, h2)


def test_exact_batchnorm_switches_every_layer_and_restores_it() -> None:
    model = Conv4(hidden=4, image_size=16)
    layers = [m for m in model.modules() if isinstance(m, BatchStatNorm2d)]
    assert len(layers) == 4 and not any(m.exact for m in layers)  # fused by default
    with pytest.raises(RuntimeError, match="boom"), exact_batchnorm(model):
        assert all(m.exact for m in layers)
        raise RuntimeError("boom")
    assert not any(m.exact for m in layers)


@pytest.mark.parametrize("image_size, in_channels, dim", [(28, 1, 64), (84, 3, 1600)])
def test_conv4_feature_sizes(image_size: int, in_channels: int, dim: int) -> None:
    model = Conv4(in_channels=in_channels, image_size=image_size, num_classes=5)
    assert model.feature_dim == dim
    assert model(torch.zeros(2, in_channels, image_size, image_size)).shape == (2, 5)
    with pytest.raises(ValueError, match="image_size"):
        Conv4(image_size=8)


def test_prototypes_come_from_the_features_of_any_classifier_not_its_logits() -> None:
    """A Conv-4 with a head and a ResNet from build_classifier embed with forward_features."""
    from tlhelpers.models.backbones import build_classifier

    torch.manual_seed(0)
    episode = _sampler().sample(seed=1)
    with_head = Conv4(hidden=8, num_classes=5).eval()
    logits = protonet_logits(with_head, episode)
    assert logits.shape == (len(episode.query_y), 3)
    headless = Conv4(hidden=8).eval()
    headless.load_state_dict({k: v for k, v in with_head.state_dict().items() if k in headless.state_dict()})
    torch.testing.assert_close(logits, protonet_logits(headless, episode))  # the head plays no part
    resnet = build_classifier("resnet18", num_classes=5, weights=None).model.eval()
    rgb = episode.__class__(**{**vars(episode), "support_x": episode.support_x.expand(-1, 3, -1, -1),
                               "query_x": episode.query_x.expand(-1, 3, -1, -1)})
    assert protonet_logits(resnet, rgb).shape == (len(episode.query_y), 3)  # 512-d features, not 5 logits
