from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tlhelpers.fewshot.conv4 import Conv4
from tlhelpers.fewshot.protonet import protonet_step
from tlhelpers.fewshot.sampler import EpisodeSampler
from tlhelpers.fewshot.training import meta_train


def _sampler() -> EpisodeSampler:
    images = torch.randint(0, 256, (40, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return EpisodeSampler(images, torch.arange(5).repeat_interleave(8), n_way=3, k_shot=1, n_query=2)


def test_history_and_resume_give_the_same_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    full = Conv4(hidden=4, image_size=16)
    start = {k: v.clone() for k, v in full.state_dict().items()}
    history = meta_train(full, protonet_step, _sampler(), 6, eval_every=3, device="cpu", progress=False,
                         val_fn=lambda m: 0.5)
    assert history["iteration"] == [3, 6] and history["val_acc"] == [0.5, 0.5]

    part = Conv4(hidden=4, image_size=16)
    part.load_state_dict(start)
    ckpt = tmp_path / "ckpt.pt"
    meta_train(part, protonet_step, _sampler(), 3, eval_every=3, device="cpu", progress=False, checkpoint_path=ckpt)
    resumed = Conv4(hidden=4, image_size=16)
    h = meta_train(resumed, protonet_step, _sampler(), 6, eval_every=3, device="cpu", progress=False, checkpoint_path=ckpt)
    assert h["iteration"] == [3, 6]
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
    assert h.stopped_early and h.planned == 6 and h["iteration"] == [1]  # a record at the stop
    resumed = Conv4(hidden=4, image_size=16)
    h = meta_train(resumed, protonet_step, _sampler(), 6, eval_every=3, device="cpu", progress=False, checkpoint_path=ckpt)
    assert not h.stopped_early and h["iteration"] == [1, 3, 6]
    for k, v in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v)


def test_bad_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="meta_batch"):
        meta_train(Conv4(hidden=4, image_size=16), protonet_step, _sampler(), 2, meta_batch=0, progress=False)
    with pytest.raises(ValueError, match="time_limit"):
        meta_train(Conv4(hidden=4, image_size=16), protonet_step, _sampler(), 2, progress=False, time_limit=-1.0)
