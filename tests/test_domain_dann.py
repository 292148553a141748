from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from tlhelpers.data.tensor_dataset import ImageTensorDataset
from tlhelpers.domain.dann import DANN, DigitNet, DomainDiscriminator
from tlhelpers.domain.grl import grl_lambda
from tlhelpers.domain.mmd import MultiKernelMMD
from tlhelpers.domain.paired import PairedLoader, UnlabeledDataset
from tlhelpers.domain.steps import MMDStep, dann_step, source_only_step
from tlhelpers.training.engine import TrainState, fit


def make_set(n, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    images = (torch.rand(n, 3, 28, 28, generator=g) * 200 + shift).clamp(0, 255).to(torch.uint8)
    labels = torch.randint(0, 10, (n,), generator=g)
    return ImageTensorDataset(images, labels, [str(i) for i in range(10)])


def make_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    xs, xt = torch.rand(8, 3, 28, 28, generator=g), torch.rand(8, 3, 28, 28, generator=g) * 0.5 + 0.5
    return xs, torch.randint(0, 10, (8,), generator=g), xt


def make_model(seed=0):
    torch.manual_seed(seed)
    return DANN(DigitNet(num_classes=10, image_size=28, feature_dim=16), DomainDiscriminator(16, hidden=16))


def domain_loss(model, batch):
    xs, _, xt = batch
    logits = model.discriminator(model.forward_features(torch.cat([xs, xt])))
    return F.binary_cross_entropy_with_logits(logits, torch.cat([torch.zeros(8), torch.ones(8)]))


def test_forward_gives_class_logits():
    assert make_model()(torch.zeros(2, 3, 28, 28)).shape == (2, 10)


def test_backbone_gradient_equals_class_minus_lambda_domain():
    model, batch = make_model(), make_batch()
    model.eval()  # no dropout, so the three passes see the same network
    state = TrainState(step=3, total_steps=10, epoch=0)
    backbone = list(model.classifier.backbone.parameters())
    out = dann_step(model, batch, state)
    got = torch.autograd.grad(out.loss, backbone)
    xs, ys, _ = batch
    g_cls = torch.autograd.grad(F.cross_entropy(model(xs), ys), backbone, allow_unused=True)
    g_dom = torch.autograd.grad(domain_loss(model, batch), backbone)
    lam = grl_lambda(0.3)
    assert out.metrics["lambda"] == pytest.approx(lam)
    # In eval mode BatchNorm uses running statistics, so the joint and separate passes agree.
    for g, c, d in zip(got, g_cls, g_dom, strict=True):
        ref = (c if c is not None else 0) - lam * d
        assert torch.allclose(g, ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("part, sign", [("backbone", 1), ("discriminator", -1)])
def test_step_moves_features_to_increase_domain_loss_and_discriminator_to_decrease_it(part, sign):
    model, batch = make_model(), make_batch()
    nn.init.zeros_(model.classifier.head[1].weight)  # the class loss then sends no gradient to the backbone
    model.eval()
    before = domain_loss(model, batch).item()
    module = model.classifier.backbone if part == "backbone" else model.discriminator
    opt = torch.optim.SGD(module.parameters(), lr=0.05)
    dann_step(model, batch, TrainState(step=5, total_steps=10, epoch=0)).loss.backward()
    opt.step()
    after = domain_loss(model, batch).item()
    assert sign * (after - before) > 0, (part, before, after)


def test_lambda_zero_at_start_so_domain_gradient_absent():
    model, batch = make_model(), make_batch()
    model.eval()
    out = dann_step(model, batch, TrainState(step=0, total_steps=10, epoch=0))
    assert out.metrics["lambda"] == 0.0
    assert set(out.metrics) == {"class_loss", "domain_loss", "domain_acc", "lambda"}


def test_unlabeled_dataset_never_needs_labels():
    target = make_set(12, 1)
    wrapped = UnlabeledDataset(target)
    target.labels = None  # nothing downstream may read them
    x = wrapped[3]
    assert isinstance(x, torch.Tensor) and x.shape == (3, 28, 28)
    assert torch.equal(x, target.images[3].float() / 255)


def test_paired_loader_drops_target_labels():
    source, target = make_set(16, 0), make_set(12, 1)
    loader = PairedLoader(DataLoader(source, 4), DataLoader(target, 4))  # target yields (x, y)
    batches = list(loader)
    assert len(batches) == len(loader) == 4
    assert all(len(b) == 3 and b[2].shape == (4, 3, 28, 28) for b in batches)
    assert torch.equal(batches[0][2], target.images[:4].float() / 255)
    assert torch.equal(batches[3][2], target.images[:4].float() / 255)  # target restarted


def run_dann(target, seed=0, epochs=2):
    torch.manual_seed(seed)
    source = make_set(32, 0)
    loader = PairedLoader(
        DataLoader(source, 8, shuffle=True, generator=torch.Generator().manual_seed(seed)),
        DataLoader(UnlabeledDataset(target), 8, shuffle=True, generator=torch.Generator().manual_seed(seed + 1)),
    )
    model = make_model(seed)
    history = fit(model, loader, epochs, lr=1e-3, step_fn=dann_step, device="cpu", progress=False)
    return model, history


def test_training_result_does_not_depend_on_target_labels():
    target = make_set(24, 1, shift=40)
    scrambled = ImageTensorDataset(target.images, torch.zeros(24, dtype=torch.long), target.classes)
    m1, h1 = run_dann(target)
    m2, h2 = run_dann(scrambled)
    for p, q in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True):
        assert torch.equal(p, q)
    assert {"domain_acc", "lambda", "domain_loss"} <= set(h1.keys)
    assert 0 <= h1["lambda"][0] < h1["lambda"][1] < 1


def test_mmd_and_source_only_steps_run_in_fit():
    source, target = make_set(16, 0), make_set(16, 1, shift=60)
    loader = PairedLoader(DataLoader(source, 8), DataLoader(UnlabeledDataset(target), 8))
    for step in (source_only_step, MMDStep(MultiKernelMMD(), weight=1.0)):
        torch.manual_seed(0)
        model = DigitNet(10, image_size=28, feature_dim=16)
        history = fit(model, loader, 1, step_fn=step, device="cpu", progress=False)
        assert history["train_loss"][0] > 0
    assert "mmd" in history.keys


def test_bad_input():
    model = make_model()
    xs, ys, _ = make_batch()
    with pytest.raises(ValueError, match="differ"):
        dann_step(model, (xs, ys, torch.rand(8, 1, 28, 28)), TrainState(0, 1, 0))
    with pytest.raises(ValueError, match="PairedLoader"):
        dann_step(model, (xs, ys), TrainState(0, 1, 0))
    with pytest.raises(ValueError, match="forward_features"):
        DANN(nn.Linear(3, 3))
    with pytest.raises(ValueError, match="too small"):
        DigitNet(image_size=12)
    with pytest.raises(ValueError, match="empty"):
        PairedLoader(DataLoader(make_set(4, 0), 2), [])


def _image_folder(root, shift, seed):
    """Two classes of two random 32x32 PNGs under root/<class>/, loaded as an ImageFolder."""
    import numpy as np
    from PIL import Image
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import ToTensor

    rng = np.random.default_rng(seed)
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            pixels = (rng.integers(0, 150, (32, 32, 3)) + shift).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return ImageFolder(root, transform=ToTensor())


def test_dann_and_mmd_wrap_a_resnet50_from_build_classifier(tmp_path):
    from tlhelpers.models.backbones import build_classifier

    source, target = _image_folder(tmp_path / "source", 0, 0), _image_folder(tmp_path / "target", 80, 1)
    loader = PairedLoader(DataLoader(source, 4, shuffle=True), DataLoader(target, 4, shuffle=True))
    torch.manual_seed(0)
    resnet = build_classifier("resnet50", num_classes=2, weights=None).model
    model = DANN(resnet)
    assert model.discriminator.net[0].in_features == 2048 == model.num_features  # sized from the ResNet's features
    before = {k: v.clone() for k, v in model.discriminator.state_dict().items()}
    history = fit(model, loader, 1, step_fn=dann_step, device="cpu", progress=False)
    assert len(history["domain_acc"]) == 1 and 0 <= history["lambda"][0] < 1
    assert any(not torch.equal(before[k], v) for k, v in model.discriminator.state_dict().items())  # it trained
    xs, ys = next(iter(DataLoader(source, 4)))
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(xs)
        assert feats.shape == (4, 2048)
        assert model.domain_logits(feats, 1.0).shape == (4,)
        torch.testing.assert_close(model.forward_head(feats), model(xs))
    assert model.classifier.fc.out_features == 2  # the torchvision attribute still works
    # MMD's step on the bare built model (it used to call model.head, which a ResNet lacks)
    history = fit(resnet, loader, 1, step_fn=MMDStep(weight=0.1), device="cpu", progress=False)
    assert history["mmd"][0] >= 0 and history["train_loss"][0] > 0
