"""PairedLoader: labels never pass, and a resumed run continues the source/target pairing exactly."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tlhelpers.core.runtime import seed_everything
from tlhelpers.domain.paired import PairedLoader, UnlabeledDataset
from tlhelpers.training.engine import StepOutput, fit


def _sets():
    g = torch.Generator().manual_seed(0)
    xs, xt = torch.randn(96, 8, generator=g), torch.randn(56, 8, generator=g) + 1.0
    return TensorDataset(xs, (xs[:, 0] > 0).long()), TensorDataset(xt, (xt[:, 1] > 0).long())


def _paired():
    """6 source batches per epoch, 4 target batches per pass: each epoch ends half-way through a target pass."""
    source, target = _sets()
    return PairedLoader(
        DataLoader(source, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(1)),
        DataLoader(UnlabeledDataset(target), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(2)),
    )


def test_target_labels_never_pass():
    source, target = _sets()
    xs, ys, xt = next(iter(PairedLoader(DataLoader(source, 16), DataLoader(target, 16))))
    assert xt.shape == (16, 8) and torch.equal(xt, target.tensors[0][:16]) and ys.shape == (16,)


def test_state_dict_continues_the_pairing_exactly():
    reference = _paired()
    batches = [b for _ in range(2) for b in reference]  # two epochs: 12 target batches, 3 passes
    first = _paired()
    for _ in first:  # one epoch: the second target pass is 2 batches in
        pass
    state = first.state_dict()
    resumed = _paired()  # built from the seeds again, as after a restart
    resumed.load_state_dict(state)
    for want, got in zip(batches[6:], resumed, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(want, got))


def _da_step(model, batch, state):
    xs, ys, xt = batch
    logits = model(xs)
    return StepOutput(F.cross_entropy(logits, ys) + 0.1 * model(xt).pow(2).mean(), logits.detach(), ys)


def test_interrupted_domain_adaptation_run_resumes_bit_for_bit(tmp_path):
    def run(ckpt, crash_at=None):
        seed_everything(0)
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))

        def step(m, batch, state):
            if state.step == crash_at:
                raise KeyboardInterrupt("runtime disconnected")
            return _da_step(m, batch, state)

        fit(model, _paired(), 3, lr=3e-2, step_fn=step, checkpoint_path=ckpt, progress=False)
        return model

    straight = run(None)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "da.pt", crash_at=6 + 2)  # dies in epoch 2; at epoch 1's end the target pass was 2 of 4 in
    resumed = run(tmp_path / "da.pt")
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_interrupted_train_method_resumes_bit_for_bit(tmp_path, monkeypatch):
    """domain.experiment's seeded loaders (source, target, through PairedLoader) continue after a resume."""
    import tlhelpers.course.domain_experiment as experiment
    from tlhelpers.core.checkpoint import CheckpointError
    from tlhelpers.course.domain_pairs import DomainPair
    from tlhelpers.data.tensor_dataset import ImageTensorDataset

    g = torch.Generator().manual_seed(0)

    def images(n):
        return ImageTensorDataset(torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g),
                                  torch.arange(n) % 2, ["a", "b"])

    pair = DomainPair("s", "t", images(40), images(8), images(24), images(8))
    config = experiment.DAConfig(num_epochs=3, batch_size=8, optimizer="adam", lr=1e-2, feature_dim=8, width=4)
    crash_at = [None]
    dann_step = experiment.dann_step

    def step(model, batch, state):
        if state.step == crash_at[0]:
            raise KeyboardInterrupt("runtime disconnected")
        return dann_step(model, batch, state)

    monkeypatch.setattr(experiment, "dann_step", step)
    straight = experiment.train_method("dann", pair, config, device="cpu", progress=False).model
    crash_at[0] = 5 * 2 + 1  # 5 source batches per epoch, 3 target batches per pass: dies in epoch 3
    with pytest.raises(KeyboardInterrupt):
        experiment.train_method("dann", pair, config, device="cpu", progress=False, checkpoint_path=tmp_path / "d.pt")
    crash_at[0] = None
    resumed = experiment.train_method("dann", pair, config, device="cpu", progress=False,
                                      checkpoint_path=tmp_path / "d.pt").model
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(CheckpointError, match="another run: method dann -> mmd"):
        experiment.train_method("mmd", pair, config, device="cpu", progress=False, checkpoint_path=tmp_path / "d.pt")
