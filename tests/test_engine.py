import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tlhelpers.core.checkpoint import CheckpointError
from tlhelpers.core.runtime import seed_everything
from tlhelpers.training.engine import (
    History,
    StepOutput,
    classification_step,
    evaluate,
    fit,
    predict,
    train_mode,
)


def _data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return TensorDataset(x, y)


def _model():
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))


def _run(tmp_path=None, num_epochs=4, crash_at=None, resume=True, time_limit=None):
    seed_everything(0)
    model = _model()
    loader = DataLoader(_data(), batch_size=16, shuffle=True)

    def step(m, batch, state):
        if crash_at is not None and state.step == crash_at:
            raise KeyboardInterrupt("runtime disconnected")
        return classification_step(m, batch, state)

    ckpt = tmp_path / "run.pt" if tmp_path is not None else None
    hist = fit(model, loader, num_epochs, lr=3e-2, val_loader=DataLoader(_data(32, 1), batch_size=16),
               step_fn=step, checkpoint_path=ckpt, resume=resume, progress=False, time_limit=time_limit)
    return model, hist


def test_fit_learns_and_records_history():
    model, hist = _run()
    assert len(hist) == 4 and hist["epoch"] == [1, 2, 3, 4]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"} <= set(hist.keys)
    # the recorded val metrics are what evaluate() computes on the final model
    ev = evaluate(model, DataLoader(_data(32, 1), batch_size=16))
    assert ev["acc"] == pytest.approx(hist["val_acc"][-1])
    assert ev["loss"] == pytest.approx(hist["val_loss"][-1])
    # Learning, on enough data and steps to hold on every torch version's random stream: the 4-epoch run
    # above on 96 points ends anywhere from 0.66 to 0.91 val_acc with the torch version and thread count.
    # This run, seeds 0-19 on torch 2.2 and 2.14: val_acc 0.96-0.99, val_loss <= 0.10 (chance: 0.5, ln 2).
    seed_everything(0)
    model = _model()
    val = DataLoader(_data(512, 1), batch_size=128)
    hist = fit(model, DataLoader(_data(1024), batch_size=32, shuffle=True), 5, lr=1e-2, val_loader=val,
               progress=False)
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    assert hist["val_acc"][-1] >= 0.9 and hist["val_loss"][-1] < 0.3


def test_resume_after_interruption_matches_uninterrupted(tmp_path):
    ref_model, ref_hist = _run()
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, crash_at=6 * 2 + 3)  # 6 batches/epoch: dies inside epoch 3
    model, hist = _run(tmp_path)  # same call again resumes after epoch 2
    for key in ("train_loss", "val_acc"):
        assert hist[key] == pytest.approx(ref_hist[key], abs=1e-6)
    for a, b in zip(model.state_dict().values(), ref_model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6)


def test_time_limit_stops_after_the_first_epoch_and_says_so():
    _, hist = _run(time_limit=0.0)  # already spent: the epoch in progress is finished, no other starts
    assert len(hist) == 1 and hist.stopped_early and hist.planned == 4
    assert "of 4, stopped early by the time limit" in repr(hist)
    _, hist = _run(num_epochs=2, time_limit=3600.0)
    assert len(hist) == 2 and not hist.stopped_early and hist.planned == 2


def test_run_stopped_by_time_limit_resumes_to_the_uninterrupted_result(tmp_path):
    ref_model, ref_hist = _run()
    _, first = _run(tmp_path, time_limit=0.0)
    assert len(first) == 1 and first.stopped_early
    model, hist = _run(tmp_path)  # the same call without a limit continues after epoch 1
    assert not hist.stopped_early and hist["epoch"] == [1, 2, 3, 4]
    assert hist["val_acc"] == pytest.approx(ref_hist["val_acc"], abs=1e-6)
    for a, b in zip(model.state_dict().values(), ref_model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6)


def test_resume_false_starts_over(tmp_path):
    _run(tmp_path, num_epochs=2)
    _, hist = _run(tmp_path, num_epochs=2, resume=False)
    assert len(hist) == 2


def test_resume_says_so_in_one_line(tmp_path, capsys):
    _run(tmp_path, num_epochs=2)
    assert "resumed" not in capsys.readouterr().out  # a fresh run says nothing
    _run(tmp_path, num_epochs=2)  # a warm rerun: everything is done
    lines = [line for line in capsys.readouterr().out.splitlines() if "resumed" in line]
    assert lines == ["train: resumed from run.pt: epoch 2 of 2 already done, nothing left to train"]
    _, hist = _run(tmp_path, num_epochs=4)
    assert "resumed from run.pt: epoch 2 of 4 already done, training epochs 3-4" in capsys.readouterr().out
    assert hist["epoch"] == [1, 2, 3, 4]
    _run(tmp_path, num_epochs=4, resume=False)
    assert "resumed" not in capsys.readouterr().out


def test_truncated_checkpoint_is_reported(tmp_path):
    _run(tmp_path, num_epochs=1)
    path = tmp_path / "run.pt"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="resume=False"):
        _run(tmp_path, num_epochs=2)


def test_frozen_batchnorm_stays_in_eval_mode_and_keeps_stats():
    model = _model()
    for p in model[1].parameters():
        p.requires_grad_(False)
    before = model[1].running_mean.clone()
    train_mode(model)
    assert model.training and not model[1].training
    fit(model, DataLoader(_data(), batch_size=16), 1, progress=False)
    assert torch.equal(model[1].running_mean, before)


def test_grad_clip_bounds_the_update():
    seed_everything(0)
    model = nn.Linear(8, 2)
    before = nn.utils.parameters_to_vector(model.parameters()).detach().clone()
    x, y = _data(16)[:]
    loader = [(x * 1000, y)]
    fit(model, loader, 1, optimizer=torch.optim.SGD(model.parameters(), lr=1.0), grad_clip=1e-3, progress=False)
    after = nn.utils.parameters_to_vector(model.parameters()).detach()
    # with lr=1, the SGD step is the clipped gradient itself: its norm is the clip value
    assert (after - before).norm().item() == pytest.approx(1e-3, rel=1e-3)


def test_custom_step_metrics_and_scheduler():
    from functools import partial

    from tlhelpers.training.schedules import warmup_cosine

    def step(m, batch, state):
        out = classification_step(m, batch, state)
        return StepOutput(out.loss, metrics={"progress": state.progress})

    hist = fit(_model(), DataLoader(_data(), batch_size=16), 2, step_fn=step,
               scheduler=partial(warmup_cosine, warmup_steps=2), progress=False)
    assert "train_acc" not in hist.keys  # no logits returned, no accuracy invented
    assert hist["progress"][0] < hist["progress"][1] <= 1.0
    assert hist["lr"][-1] < 1e-4


def test_amp_is_off_on_cpu_and_predict_shapes():
    model = _model()
    logits, labels = predict(model, DataLoader(_data(20), batch_size=8), device="cpu", amp=True)
    assert logits.shape == (20, 2) and logits.dtype == torch.float32 and labels.shape == (20,)


def test_bad_input():
    model = _model()
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        fit(model, DataLoader(_data(), batch_size=16), 1, progress=False)
    with pytest.raises(ValueError, match="num_epochs"):
        fit(_model(), DataLoader(_data(), batch_size=16), 0, progress=False)
    with pytest.raises(ValueError, match="time_limit"):
        fit(_model(), DataLoader(_data(), batch_size=16), 1, progress=False, time_limit=-1)


def test_history_roundtrip_and_plot():
    import matplotlib.pyplot as plt

    h = History([{"epoch": 1, "train_loss": 1.0, "val_acc": 0.5}, {"epoch": 2, "train_loss": 0.5, "val_acc": 0.7}])
    assert History.from_dict(h.to_dict()).records == h.records
    with pytest.raises(KeyError, match="available"):
        h["nope"]
    fig = h.plot(label="run")
    assert len(fig.axes) == 2 and fig.axes[1].lines[0].get_ydata().tolist() == [0.5, 0.7]
    assert not plt.fignum_exists(fig.number), "a figure History.plot creates must come back closed (shown once)"


def _history(n_epochs, offset=0.0):
    return History({"epoch": e, "train_loss": 1 / e + offset, "val_loss": 1.2 / e + offset, "train_acc": 0.5 + 0.04 * e,
                    "val_acc": 0.45 + 0.03 * e - offset, "lr": 1e-3} for e in range(1, n_epochs + 1))


def test_history_plot_house_style():
    import matplotlib.pyplot as plt

    from tlhelpers.core.style import METHOD_COLOURS, SPLIT_STYLES

    fig, axes = plt.subplots(1, 2)
    runs = {"(a) head only": "a", "(d) from scratch": "d"}
    for i, label in enumerate(runs):
        assert _history(5, 0.1 * i).plot(label=label, axes=axes, chance=0.1) is fig
    assert plt.fignum_exists(fig.number)  # the caller's figure: the caller shows and closes it
    loss_ax, acc_ax = axes
    for ax in axes:
        lines = [line for line in ax.get_lines() if (line.get_gid() or "").startswith("tlhelpers.History:")]
        assert len(lines) == 4  # two runs x (train, val); the learning rate is not drawn
        for line in lines:
            label = line.get_label()
            run = label.rsplit(" ", 1)[0]
            split = label.rsplit(" ", 1)[1].split("_")[0]
            assert line.get_color() == METHOD_COLOURS[runs[run]], "colour is the strategy's, both splits"
            assert line.get_linestyle() == SPLIT_STYLES[split], "training dashed, validation solid"
            assert line.get_marker() == "o", "5 points: a short curve gets markers"
        ticks = [t for t in ax.get_xticks() if 1 <= t <= 5]
        assert ticks and all(float(t).is_integer() for t in ticks), f"epochs are whole numbers: {ticks}"
        assert ax.get_xlabel() == "epoch"
    assert loss_ax.get_legend() is None
    legend = acc_ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["(a) head only", "(d) from scratch", "training",
                                                           "validation", "chance"]
    assert legend.get_bbox_to_anchor().transformed(acc_ax.transAxes.inverted()).x0 > 1, "legend outside the data"
    plt.close(fig)


def test_history_plot_without_label_and_long_runs():
    fig = _history(20).plot()
    lines = fig.axes[0].get_lines()
    assert {line.get_linestyle() for line in lines} == {"--", "-"} and len({line.get_color() for line in lines}) == 1
    assert all(line.get_marker() in (None, "None", "") for line in lines), "no markers on a 20-point curve"
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ["training", "validation"]


class _CyclicBar:
    """A progress bar that, like a notebook's, lives on in a reference cycle until the collector runs."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs, self.me = args, kwargs, self

    def __iter__(self):
        return iter(self.args[0] if self.args else range(self.kwargs.get("total") or 0))

    def update(self, n=1):
        pass

    def set_postfix(self, *args, **kwargs):
        pass

    def close(self):
        pass


# Python 3.12+ warns that fork() in a multi-threaded process may deadlock; DataLoader's workers fork by default.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_worker_processes_end_with_their_loader_even_when_progress_bars_linger(monkeypatch):
    """A loader's persistent workers (and their pipes) must not outlive it through a progress bar.

    In a notebook, five training runs in one cell once kept about 70 file descriptors open after the
    cell ended, because tqdm's notebook bars held the loaders in reference cycles.
    """
    import gc
    import multiprocessing

    import tlhelpers.training.engine as engine

    monkeypatch.setattr(engine, "tqdm", _CyclicBar)
    # torch's first optimizer imports its compiler lazily, and that import keeps the calling frames
    # (fit's among them) in a cycle once per process: make it happen before the check.
    torch.optim.AdamW(nn.Linear(1, 1).parameters())
    before = set(multiprocessing.active_children())
    gc.disable()
    try:
        loader = DataLoader(_data(), batch_size=16, shuffle=True, num_workers=1, persistent_workers=True)
        val = DataLoader(_data(32, 1), batch_size=16, num_workers=1)
        fit(_model(), loader, 2, lr=1e-2, val_loader=val, progress=True)
        predict(_model(), val, progress=True)
        assert set(multiprocessing.active_children()) - before, "the persistent training workers should be running"
        del loader, val
        left = set(multiprocessing.active_children()) - before
        for p in left:
            p.join(timeout=10)  # a worker told to stop exits within moments; a held one never does
        left = {p for p in left if p.is_alive()}
    finally:
        gc.enable()
    assert not left, f"{len(left)} DataLoader worker(s) outlived their loader"


# --- run identity and exact resume (issue 13) -------------------------------------------------------


def _identity_run(tmp_path, num_epochs=2, lr=3e-2, hidden=16, data_seed=0, resume=True, scheduler=None):
    """A small fit with a run identity: the data fingerprint of its training set."""
    from tlhelpers.core.checkpoint import fingerprint_dataset

    seed_everything(0)
    model = nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, 2))
    data = _data(48, data_seed)
    hist = fit(model, DataLoader(data, batch_size=16, shuffle=True), num_epochs, lr=lr, scheduler=scheduler,
               checkpoint_path=tmp_path / "run.pt", resume=resume, progress=False,
               config={"batch_size": 16}, data_fingerprint=fingerprint_dataset(data))
    return model, hist


def test_resume_with_another_lr_data_or_architecture_is_refused_naming_the_change(tmp_path):
    _identity_run(tmp_path, num_epochs=1)
    with pytest.raises(CheckpointError, match=r"run\.pt was written by another run: lr 0\.03 -> 0\.01; pass resume=False"):
        _identity_run(tmp_path, lr=1e-2)
    with pytest.raises(CheckpointError, match="another run: data fingerprint changed; pass resume=False"):
        _identity_run(tmp_path, data_seed=5)
    # another width: the identity names it before any load_state_dict size-mismatch error
    with pytest.raises(CheckpointError, match="another run: model parameter names/shapes changed;"):
        _identity_run(tmp_path, hidden=32)
    _, hist = _identity_run(tmp_path)  # the same run resumes, and may grow (no schedule plans on num_epochs)
    assert hist["epoch"] == [1, 2]


def test_more_epochs_with_a_schedule_is_another_run(tmp_path):
    from tlhelpers.training.schedules import warmup_cosine

    _identity_run(tmp_path, num_epochs=1, scheduler=warmup_cosine)
    with pytest.raises(CheckpointError, match=r"total_steps 3 -> 6"):
        _identity_run(tmp_path, num_epochs=2, scheduler=warmup_cosine)


def test_resume_false_starts_over_and_overwrites_the_other_runs_checkpoint(tmp_path):
    _identity_run(tmp_path, num_epochs=2, lr=1e-2)
    model, hist = _identity_run(tmp_path, num_epochs=2, resume=False)  # lr 0.03 now: a new run
    fresh, _ = _identity_run(tmp_path / "elsewhere", num_epochs=2)
    assert hist["epoch"] == [1, 2]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    _, again = _identity_run(tmp_path, num_epochs=2)  # the checkpoint is now the lr 0.03 run's: resumed
    assert again["train_loss"] == hist["train_loss"]


def test_checkpoint_without_identity_resumes_with_a_warning(tmp_path):
    from tlhelpers.core.checkpoint import atomic_save, safe_load

    _identity_run(tmp_path, num_epochs=1)
    state = safe_load(tmp_path / "run.pt")
    del state["identity"], state["loaders"]  # as an older tlhelpers wrote it
    atomic_save(state, tmp_path / "run.pt")
    with pytest.warns(UserWarning, match="records no run settings.*resume=False"):
        _, hist = _identity_run(tmp_path, num_epochs=2)
    assert hist["epoch"] == [1, 2]


def _interrupted_and_straight(tmp_path, make_loader, num_epochs=3, crash_at=7):
    """Final weights of an uninterrupted run and of a run killed at step ``crash_at`` then resumed."""

    def run(ckpt, crash):
        seed_everything(0)
        model = _model()
        loader, steps = make_loader()

        def step(m, batch, state):
            if crash and state.step == crash_at:
                raise KeyboardInterrupt("runtime disconnected")
            return classification_step(m, (batch[0], batch[1]), state)

        fit(model, loader, num_epochs, lr=3e-2, step_fn=step, checkpoint_path=ckpt, progress=False,
            steps_per_epoch=steps)
        return model

    straight = run(None, False)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "run.pt", True)
    resumed = run(tmp_path / "run.pt", False)  # a new process would build its loaders from their seeds again
    return straight, resumed


def test_resume_is_exact_with_a_loader_that_has_its_own_generator(tmp_path):
    def make():
        return DataLoader(_data(), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(7)), None

    straight, resumed = _interrupted_and_straight(tmp_path, make, crash_at=6 * 2 + 3)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_resume_is_exact_with_a_sampler_generator_and_steps_per_epoch(tmp_path):
    from torch.utils.data import RandomSampler

    def make():  # the sampler draws from its own generator, the loader (base seed) from another
        ds = _data()
        sampler = RandomSampler(ds, generator=torch.Generator().manual_seed(3))
        return DataLoader(ds, batch_size=16, sampler=sampler, generator=torch.Generator().manual_seed(4)), 4

    straight, resumed = _interrupted_and_straight(tmp_path, make, crash_at=4 * 2 + 1)
    assert all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()))


def test_empty_train_loader_is_refused_before_training():
    model = nn.Linear(8, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    empty = DataLoader(_data(8), batch_size=16, drop_last=True)  # 0 batches
    with pytest.raises(ValueError, match="train_loader is empty"):
        fit(model, empty, 2, device="cpu", progress=False)
    with pytest.raises(ValueError, match="yielded no batches"):  # no len(): found at the first epoch
        fit(model, iter([]), 2, device="cpu", progress=False, steps_per_epoch=3)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_empty_val_loader_is_refused_before_training(tmp_path):
    model = nn.Linear(8, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    empty_val = DataLoader(TensorDataset(torch.zeros(0, 8), torch.zeros(0, dtype=torch.long)), batch_size=4)
    with pytest.raises(ValueError, match="val_loader is empty"):
        fit(model, DataLoader(_data(16), batch_size=8), 2, val_loader=empty_val, device="cpu", progress=False,
            checkpoint_path=tmp_path / "run.pt")
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not (tmp_path / "run.pt").exists()
    with pytest.raises(ValueError, match="no batches"):
        predict(model, iter([]), device="cpu")


def test_step_grads_replace_backward_and_history_counts_steps():
    # A step that hands over its own gradient (as MAML and Reptile do): the loop must not back-propagate.
    model = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    direction = torch.tensor([[1.0, -2.0, 0.5]])

    def step(m, batch, state):
        loss = (m(batch[0]) ** 2).mean()  # backward of this would give another gradient
        return StepOutput(loss, grads={"weight": direction})

    data = TensorDataset(torch.randn(6, 3), torch.zeros(6))
    hist = fit(model, DataLoader(data, batch_size=2), 2, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
               step_fn=step, device="cpu", progress=False)
    torch.testing.assert_close(model.weight.detach(), 1.0 - 0.1 * 6 * direction)
    assert hist["step"] == [3, 6] and hist["epoch"] == [1, 2]
    with pytest.raises(ValueError, match="not parameters of the model"):
        fit(nn.Linear(3, 1), DataLoader(data, batch_size=2), 1, step_fn=lambda m, b, s: StepOutput(
            m(b[0]).sum(), grads={"nope": direction}), device="cpu", progress=False)


def test_steps_per_epoch_bounds_a_dataloader_over_an_iterable_dataset_without_len():
    # DataLoader has __len__, but it raises TypeError for an IterableDataset without one: the
    # steps_per_epoch that the "no len()" error asks for must then be taken as given.
    from torch.utils.data import IterableDataset

    x, y = _data(48).tensors

    class Stream(IterableDataset):
        def __iter__(self):
            return iter(zip(x, y))

    loader = DataLoader(Stream(), batch_size=8)
    with pytest.raises(TypeError):
        len(loader)
    history = fit(nn.Linear(8, 2), loader, 2, device="cpu", progress=False, steps_per_epoch=4)
    assert history["step"] == [4, 8]  # 4 of the 6 batches per epoch
