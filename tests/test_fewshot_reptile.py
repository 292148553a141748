from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from tlhelpers.fewshot.reptile import reptile_adapt, reptile_predict, reptile_step, reptile_update
from tlhelpers.fewshot.sampler import EpisodeSampler
from tlhelpers.models.conv4 import Conv4
from tlhelpers.training.engine import apply_gradients


def _setup() -> tuple[Conv4, object]:
    torch.manual_seed(0)
    model = Conv4(hidden=4, image_size=16, num_classes=3)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 1, 16, 16), dtype=torch.uint8, generator=gen)
    sampler = EpisodeSampler(images, torch.arange(5).repeat_interleave(8), n_way=3, k_shot=2, n_query=2)
    return model, sampler.sample_batch(2, gen)


def test_sgd_adaptation_matches_manual_sgd_and_leaves_model_untouched() -> None:
    model, batch = _setup()
    task = batch.task(0)
    before = copy.deepcopy(model.state_dict())
    learner = reptile_adapt(model, task.support_x, task.support_y, inner_steps=3, inner_lr=0.1, inner_optimizer="sgd")
    manual = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    for _ in range(3):
        loss = F.cross_entropy(torch.func.functional_call(model, manual, (task.support_x,)), task.support_y)
        grads = torch.autograd.grad(loss, list(manual.values()))
        manual = {k: (w - 0.1 * g).detach().requires_grad_(True) for (k, w), g in zip(manual.items(), grads)}
    for k, p in learner.named_parameters():
        torch.testing.assert_close(p, manual[k])
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


@pytest.mark.parametrize("meta_lr", [0.1, 0.5, 1.0])
def test_meta_update_moves_toward_adapted_weights_by_meta_lr(meta_lr: float) -> None:
    model, batch = _setup()
    theta = {k: v.detach().clone() for k, v in model.named_parameters()}
    # The adapted weights, computed independently of reptile_step on the same task data.
    phis = []
    for t in range(batch.num_tasks):
        task = batch.task(t)
        x, y = torch.cat([task.support_x, task.query_x]), torch.cat([task.support_y, task.query_y])
        phis.append(dict(reptile_adapt(model, x, y, inner_steps=4, inner_lr=0.01).named_parameters()))
    phi_mean = {k: torch.stack([p[k].detach() for p in phis]).mean(0) for k in theta}

    opt = torch.optim.SGD(model.parameters(), lr=meta_lr)
    opt.zero_grad()
    out = reptile_step(model, batch, inner_steps=4, inner_lr=0.01)
    apply_gradients(model, out)
    opt.step()
    assert 0.0 <= out.metrics["train_acc"] <= 1.0
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), theta[k] + meta_lr * (phi_mean[k] - theta[k]), rtol=1e-5, atol=1e-6)

    # The in-place form does the same thing.
    fresh, _ = _setup()
    reptile_update(fresh, [reptile_adapt(fresh, batch.task(0).support_x, batch.task(0).support_y, inner_steps=2, inner_lr=0.01)], 1.0)
    assert any(not torch.equal(a, b) for a, b in zip(fresh.parameters(), _setup()[0].parameters()))


def test_predict_shape_and_errors() -> None:
    model, batch = _setup()
    task = batch.task(0)
    assert reptile_predict(model, task, inner_steps=2, inner_lr=0.01).shape == (6, 3)
    with pytest.raises(ValueError, match="inner_optimizer"):
        reptile_adapt(model, task.support_x, task.support_y, inner_steps=1, inner_lr=0.1, inner_optimizer="rmsprop")
    with pytest.raises(ValueError, match="reptile_adapt"):
        reptile_update(model, [], 0.1)
