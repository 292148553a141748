import pytest
import torch

from tlhelpers.models.smallcnn import SmallCNN


def test_shapes_and_head_replacement():
    model = SmallCNN(10, in_channels=1, width=8)
    x = torch.randn(2, 1, 28, 28)
    assert model(x).shape == (2, 10)
    backbone_before = [p.clone() for p in model.backbone.parameters()]
    model.replace_head(4)
    assert model(x).shape == (2, 4)
    assert all(torch.equal(a, b) for a, b in zip(backbone_before, model.backbone.parameters()))


def test_every_parameter_gets_a_gradient():
    model = SmallCNN(3, width=8)
    model(torch.randn(4, 3, 16, 16)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("n", [0, 1])
def test_too_few_classes(n):
    with pytest.raises(ValueError, match="at least 2"):
        SmallCNN(n)
    with pytest.raises(ValueError, match="at least 2"):
        SmallCNN(3).replace_head(n)


def test_reset_classifier_keeps_features_and_replace_head_is_its_alias():
    torch.manual_seed(0)
    model = SmallCNN(10, width=4).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, model.num_features) == (2, 16)
        torch.testing.assert_close(model.forward_head(feats), model(x))
        head = model.reset_classifier(3)
        assert model.head is head and model(x).shape == (2, 3)
        assert model.replace_head(5) is model.head and model.head.out_features == 5
        torch.testing.assert_close(model.forward_features(x), feats)
