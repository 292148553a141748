import math

import pytest
import torch

from tlhelpers.training.schedules import inverse_decay, warmup_cosine


def _lrs(factory, total, **kw):
    opt = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "lr": 1.0},
                           {"params": [torch.zeros(1, requires_grad=True)], "lr": 0.1}])
    sched = factory(opt, total, **kw)
    out = []
    for _ in range(total):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


def test_warmup_cosine_shape():
    lrs = _lrs(warmup_cosine, 100, warmup_steps=10)
    head = [a for a, _ in lrs]
    assert head[0] == pytest.approx(0.1)
    assert head[9] == pytest.approx(1.0)
    assert all(x >= y for x, y in zip(head[10:], head[11:]))  # decays monotonically after warm-up
    assert head[-1] < 0.01
    assert all(b == pytest.approx(a * 0.1) for a, b in lrs)  # group ratios kept (discriminative LRs)


def test_inverse_decay_matches_paper_formula():
    lrs = [a for a, _ in _lrs(inverse_decay, 50)]
    for step in (0, 25, 49):
        assert lrs[step] == pytest.approx((1 + 10 * step / 50) ** -0.75)


def test_bad_total_steps():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    with pytest.raises(ValueError, match="total_steps"):
        warmup_cosine(opt, 0)
    assert math.isfinite(inverse_decay(opt, 1).get_last_lr()[0])
