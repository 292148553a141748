"""Grad-CAM against a reference computed with plain autograd, and its promises about the model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tlhelpers.models.mini_resnet import MiniResNet
from tlhelpers.models.smallcnn import SmallCNN
from tlhelpers.transfer.gradcam import default_layer, for_display, grad_cam, plot_gradcam


class Tiny(nn.Module):
    """body: the conv stage; head: 1x1 conv + ReLU (so dy/dA varies over space), pooling and a linear layer."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                  nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.Conv2d(6, 6, 1), nn.ReLU(inplace=inplace), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(6, 5))

    def forward(self, x):
        return self.head(self.body(x))


def _model(seed: int = 0, inplace: bool = False) -> Tiny:
    torch.manual_seed(seed)
    model = Tiny(inplace)
    model.body[1].running_mean.uniform_(-0.2, 0.2)  # eval-mode BatchNorm differs from train mode
    return model.eval()


def _images(n: int = 3, size: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _reference(pre, post, x, target=None):
    """Grad-CAM by hand: A = pre(x), y = post(A), w_k = mean_ij dy_c/dA_k, relu(sum_k w_k A_k), upsample, / max."""
    acts = pre(x)
    logits = post(acts)
    c = logits.argmax(1) if target is None else torch.as_tensor(target).expand(len(x))
    (grads,) = torch.autograd.grad(logits[torch.arange(len(x)), c].sum(), acts)
    cam = F.relu((grads.mean(dim=(2, 3))[:, :, None, None] * acts).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(1).values[:, None, None]
    return torch.where(peak > 0, cam / peak, torch.zeros_like(cam)).detach()


@pytest.mark.parametrize("layer", ["body", "module", None])
def test_grad_cam_matches_an_autograd_reference(layer):
    model, x = _model(), _images()
    if layer is None:  # the default: the last conv-holding child inside the head, the 1x1 conv
        assert default_layer(model) == "head.0"
        pre, post = (lambda t: model.head[0](model.body(t))), (lambda a: model.head[1:](a))
    else:
        pre, post = model.body, model.head
    expected = _reference(pre, post, x)
    got = grad_cam(model, x, layer=model.body if layer == "module" else layer)
    assert got.shape == (3, 12, 12)
    assert torch.allclose(got, expected, atol=1e-5)


def test_maps_lie_in_unit_interval_with_maximum_one():
    maps = grad_cam(_model(), _images(4), layer="body")
    assert maps.min() >= 0
    assert torch.equal(maps.flatten(1).max(1).values, torch.ones(4))


def test_a_class_without_positive_evidence_gives_an_all_zero_map():
    model = _model()
    with torch.no_grad():  # class 0 = minus the sum of non-negative features: every weight negative
        model.head[4].weight[0] = -1.0
        model.head[0].weight.copy_(torch.eye(6)[:, :, None, None])
        model.head[0].bias.zero_()
    maps = grad_cam(model, _images(2), layer="body", target=0)
    assert torch.equal(maps, torch.zeros(2, 12, 12))


def test_different_targets_give_different_maps_and_per_image_targets_work():
    model, x = _model(), _images(2)
    a, b = grad_cam(model, x, layer="body", target=1), grad_cam(model, x, layer="body", target=3)
    assert not torch.allclose(a, b, atol=1e-3)
    assert torch.allclose(a, _reference(model.body, model.head, x, target=1), atol=1e-5)
    mixed = grad_cam(model, x, layer="body", target=[1, 3])
    assert torch.allclose(mixed, torch.stack([a[0], b[1]]), atol=1e-6)


def test_model_is_left_as_it_was():
    model = _model().train()
    model.body[1].eval()  # a frozen BatchNorm, as train_mode leaves it
    for p in model.body.parameters():
        p.requires_grad_(False)
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grad_cam(model, _images(), layer="body")
    assert all(len(m._forward_hooks) == 0 for m in model.modules())
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())  # eval mode: no BN update


def test_a_model_in_train_mode_is_explained_in_eval_mode():
    model, x = _model(), _images()
    expected = _reference(model.body, model.head, x)  # eval mode: BatchNorm's running statistics
    model.train()
    running = model.body[1].running_mean.clone()
    assert torch.allclose(grad_cam(model, x, layer="body"), expected, atol=1e-5)
    assert model.training and model.body[1].training
    assert torch.equal(model.body[1].running_mean, running)


def test_hooks_are_removed_when_the_forward_fails():
    model = _model()
    with pytest.raises(RuntimeError):
        grad_cam(model, torch.randn(2, 5, 12, 12), layer="body")  # wrong channel count
    assert all(len(m._forward_hooks) == 0 for m in model.modules())
    assert not model.training


def test_works_with_a_fully_frozen_model():
    model, x = _model(), _images()
    expected = grad_cam(model, x, layer="body")
    model.requires_grad_(False)
    assert torch.allclose(grad_cam(model, x, layer="body"), expected, atol=1e-6)
    with torch.no_grad():  # and when the caller has switched autograd off
        assert torch.allclose(grad_cam(model, x, layer="body"), expected, atol=1e-6)


def test_in_place_relu_after_the_layer_does_not_corrupt_the_map():
    x = _images()
    plain, inplace = _model(inplace=False), _model(inplace=True)
    expected = grad_cam(plain, x, layer="head.0")
    assert torch.allclose(grad_cam(inplace, x, layer="head.0"), expected, atol=1e-6)


def test_bad_layer_name_raises_one_line_listing_valid_names():
    with pytest.raises(ValueError, match="no layer 'body.9'") as info:
        grad_cam(_model(), _images(), layer="body.9")
    message = str(info.value)
    assert "\n" not in message
    assert "body" in message and "head.0" in message


def test_layer_without_a_spatial_map_raises():
    with pytest.raises(ValueError, match="not an"):
        grad_cam(_model(), _images(), layer="head.4")


def test_default_layer_of_the_course_models():
    import torchvision

    assert default_layer(torchvision.models.resnet18(weights=None)) == "layer4"
    assert default_layer(MiniResNet(num_classes=3, widths=(4, 4, 8, 8))) == "layer4"
    small = SmallCNN(num_classes=3, width=4).eval()
    assert default_layer(small) == "backbone.2"
    maps = grad_cam(small, _images(2, size=16))
    assert maps.shape == (2, 16, 16)
    expected = _reference(small.backbone[:3], lambda a: small.head(small.backbone[3:](a)), _images(2, size=16))
    assert torch.allclose(maps, expected, atol=1e-5)


def test_for_display_undoes_normalisation():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    images = torch.rand(2, 3, 4, 4)
    normalised = (images - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    assert torch.allclose(for_display(normalised, mean, std), images, atol=1e-6)
    assert torch.equal(for_display(torch.full((3, 2, 2), 255, dtype=torch.uint8)), torch.ones(3, 2, 2))


def test_plot_gradcam_has_a_column_per_model():
    x = _images(2)
    maps = {"pretrained": grad_cam(_model(0), x, layer="body"), "scratch": grad_cam(_model(1), x, layer="body")}
    fig = plot_gradcam(x, maps, mean=(0.5,) * 3, std=(0.2,) * 3, titles=["cat", "dog"])
    assert len(fig.axes) == 6
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["cat", "Grad-CAM: pretrained", "Grad-CAM: scratch", "dog", "Grad-CAM: pretrained", "Grad-CAM: scratch"]
    assert len(fig.axes[1].images) == 2  # the image and the map over it
    with pytest.raises(ValueError, match="maps for 'scratch'"):
        plot_gradcam(x, {"scratch": maps["scratch"][:1]})
