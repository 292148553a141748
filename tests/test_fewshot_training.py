from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tlhelpers.fewshot.maml import maml_step, meta_gradient
from tlhelpers.fewshot.protonet import protonet_step
from tlhelpers.fewshot.sampler import EpisodeSampler
from tlhelpers.fewshot.training import meta_train
from tlhelpers.models.conv4 import Conv4
from tlhelpers.training.engine import fit


def _sampler() -> EpisodeSampler:
    images = torch.randint(0, 256, (40, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return EpisodeSampler(images, torch.arange(5).repeat_interleave(8), n_way=3, k_shot=1, n_query=2)


def test_history_and_resume_give_the_same_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    full = Conv4(hidden=4, image_size=16)
    start = {k: v.clone() for k, v in full.state_dict().items()}
    history = meta_train(full, protonet_step, _sampler(), 6, eval_every=3, device="cpu", progress=False,
                         val_fn=lambda m: 0.5)
    assert history["step"] == [3, 6] and history["val_acc"] == [0.5, 0.5]

    part = Conv4(hidden=4, image_size=16)
    part.load_state_dict(start)
    ckpt = tmp_path / "ckpt.pt"
    meta_train(part, protonet_step, _sampler(), 3, eval_every=3, device="cpu", progress=False, checkpoint_path=ckpt)
    resumed = Conv4(hidden=4, image_size=16)
    h = meta_train(resumed, protonet_step, _sampler(), 6, eval_every=3, device="cpu", progress=False, checkpoint_path=ckpt)
    assert h["step"] == [3, 6]
    for k, v in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v)


def test_time_limit_stops_after_one_iteration_and_a_resume_finishes_the_run(tmp_path: Path) -> None:
    torch.manual_seed(0)
    full = Conv4(hidden=4, image_size=16)
    start = {k: v.clone() for k, v in full.state_dict().items()}
    reference = meta_train(full, protonet_step, _sampler(), 6, eval_every=3, device="cpu", progress=False)
    assert not reference.stopped_early and reference.planned == 6

    ckpt = tmp_path / "ckpt.pt"
    part = Conv4(hidden=4, image_size=16)
    part.load_state_dict(start)
    h = meta_train(part, protonet_step, _sampler(), 6, eval_every=3, device="cpu", progress=False,
                   checkpoint_path=ckpt, time_limit=0.0)
    assert h.stopped_early and h.planned == 6 and h["step"] == [1]  # a record at the stop
    resumed = Conv4(hidden=4, image_size=16)
    h = meta_train(resumed, protonet_step, _sampler(), 6, eval_every=3, device="cpu", progress=False, checkpoint_path=ckpt)
    assert not h.stopped_early and h["step"] == [1, 3, 6]
    for k, v in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v)


def test_bad_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="meta_batch"):
        meta_train(Conv4(hidden=4, image_size=16), protonet_step, _sampler(), 2, meta_batch=0, progress=False)
    with pytest.raises(ValueError, match="time_limit"):
        meta_train(Conv4(hidden=4, image_size=16), protonet_step, _sampler(), 2, progress=False, time_limit=-1.0)


def _dropout_net() -> nn.Module:
    # Dropout draws from the global RNG: a resume is exact only if the loop restores it too.
    return nn.Sequential(nn.Flatten(), nn.Linear(256, 16), nn.Dropout(0.5), nn.Linear(16, 8))


def test_interrupted_run_resumes_bit_for_bit(tmp_path: Path) -> None:
    torch.manual_seed(0)
    full = _dropout_net()
    start = {k: v.clone() for k, v in full.state_dict().items()}
    torch.manual_seed(1)
    meta_train(full, protonet_step, _sampler(), 6, eval_every=2, device="cpu", progress=False, seed=3)

    ckpt = tmp_path / "ckpt.pt"
    part = _dropout_net()
    part.load_state_dict(start)
    torch.manual_seed(1)  # the same start as the uninterrupted run
    meta_train(part, protonet_step, _sampler(), 6, eval_every=2, device="cpu", progress=False, seed=3,
               checkpoint_path=ckpt, time_limit=0.0)  # interrupted after its first iteration
    torch.manual_seed(123)  # whatever happened in between (a new session) moved the global RNG
    resumed = _dropout_net()
    fresh_sampler = _sampler()
    fresh_sampler.sample_batch(5)  # and a sampler that has drawn other episodes since
    h = meta_train(resumed, protonet_step, fresh_sampler, 6, eval_every=2, device="cpu", progress=False, seed=3,
                   checkpoint_path=ckpt)
    assert h["step"] == [1, 2, 4, 6]
    for k, v in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k


def test_frozen_batchnorm_keeps_its_running_stats() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(8))
    model(torch.rand(2, 1, 16, 16))  # materialise the lazy layer
    frozen, trained = model[1], model[3]
    frozen.requires_grad_(False)
    frozen_stats = (frozen.running_mean.clone(), frozen.running_var.clone(), int(frozen.num_batches_tracked))
    trained_mean = trained.running_mean.clone()
    meta_train(model, protonet_step, _sampler(), 3, device="cpu", progress=False)
    assert torch.equal(frozen.running_mean, frozen_stats[0]) and torch.equal(frozen.running_var, frozen_stats[1])
    assert int(frozen.num_batches_tracked) == frozen_stats[2]
    assert not torch.equal(trained.running_mean, trained_mean)  # a trainable BatchNorm does update
    assert model.training and not frozen.training


def test_history_keys_are_those_of_fit() -> None:
    torch.manual_seed(0)
    meta = meta_train(Conv4(hidden=4, image_size=16), protonet_step, _sampler(), 4, eval_every=2, device="cpu",
                      progress=False)
    data = TensorDataset(torch.randn(12, 3), torch.arange(12) % 2)
    epochs = fit(nn.Linear(3, 2), DataLoader(data, batch_size=4), 2, device="cpu", progress=False)
    shared = {"step", "train_loss", "train_acc", "seconds"}
    assert shared <= set(meta.keys) and shared | {"epoch"} <= set(epochs.keys)
    assert "iteration" not in meta.keys and "time_s" not in meta.keys
    assert meta["step"] == [2, 4] and epochs["step"] == [3, 6]  # optimizer steps so far
    assert all(s >= 0 for s in meta["seconds"] + epochs["seconds"])


def test_maml_grads_are_applied_by_the_loop() -> None:
    torch.manual_seed(0)
    model = Conv4(hidden=4, image_size=16, num_classes=3)
    sampler = _sampler()
    theta = {k: v.detach().clone() for k, v in model.named_parameters()}
    batch = sampler.manual_seed(5).sample_batch(2)
    expected, _, _ = meta_gradient(model, batch, inner_lr=0.1, inner_steps=1)
    step = lambda m, b: maml_step(m, b, inner_lr=0.1, inner_steps=1)  # noqa: E731
    h = meta_train(model, step, sampler, 1, meta_batch=2, optimizer=torch.optim.SGD(model.parameters(), lr=0.5),
                   device="cpu", progress=False, seed=5)
    assert h["step"] == [1] and 0.0 <= h["train_acc"][0] <= 1.0
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), theta[k] - 0.5 * expected[k])


def test_meta_history_plots_against_steps() -> None:
    from tlhelpers.training.engine import History

    h = History([{"step": s, "train_loss": 1.0 / s, "train_acc": 0.2 * s, "seconds": 0.1} for s in (2, 4)])
    fig = h.plot()
    assert fig.axes[0].get_xlabel() == "step" and list(fig.axes[0].get_lines()[0].get_xdata()) == [2, 4]
