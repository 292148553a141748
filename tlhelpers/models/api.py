"""One model interface for every network of the course, in timm's vocabulary.

Every model the package builds or wraps answers four questions the same way:

- ``forward_features(x)``: the pooled feature vector the classification head sees, ``(N, num_features)``;
- ``forward_head(features)``: the class scores of those features, so
  ``forward_head(forward_features(x))`` equals ``model(x)`` (in eval mode);
- ``num_features``: the length of the feature vector (an int);
- ``reset_classifier(num_classes)``: a fresh head for a new task; the features stay the same.

``get_classifier()`` returns the head module. The course's own networks (``SmallCNN``,
``MiniResNet``, ``MiniVGG``, ``DigitNet``, ``Conv4``, ``DANN``) define these methods;
:func:`tlhelpers.models.backbones.build_classifier` gives a torchvision classifier them with
:func:`attach_interface`, which keeps its modules, attribute names (``model.fc``) and
``state_dict`` keys. Unlike timm, ``forward_features`` returns the *pooled* vector (the head's input),
not the last convolutional map.

The functions :func:`forward_features`, :func:`forward_head`, :func:`num_features` and
:func:`reset_classifier` work on any of these models and on a plain torchvision classifier as well
(through its final ``nn.Linear``, see :func:`head_name`).

Example:
    >>> model = build_classifier("resnet50", num_classes=2, weights=None).model
    >>> model.forward_features(torch.zeros(4, 3, 32, 32)).shape, model.num_features
    (torch.Size([4, 2048]), 2048)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from torch import Tensor, nn

#: Where the classification head lives, by family; other families use their last ``nn.Linear``.
HEAD_PATHS: dict[str, str] = {
    "resnet": "fc", "resnext": "fc", "wide_resnet": "fc", "regnet": "fc",
    "vgg": "classifier.6", "efficientnet": "classifier.1", "mobilenet_v2": "classifier.1",
    "mobilenet_v3": "classifier.3", "convnext": "classifier.2", "densenet": "classifier",
}
_METHODS = ("forward_features", "forward_head", "reset_classifier", "get_classifier")


def _linear_head_name(model: nn.Module) -> str:
    modules = dict(model.named_modules())
    for family, path in HEAD_PATHS.items():
        if type(model).__name__.lower().startswith(family.replace("_", "")) and isinstance(modules.get(path), nn.Linear):
            return path
    linear = [name for name, m in modules.items() if isinstance(m, nn.Linear) and name]
    if not linear:
        raise ValueError(
            f"{type(model).__name__} has no forward_features/forward_head and no nn.Linear head; pass a classifier "
            "such as build_classifier('resnet50').model, or define forward_features, forward_head, num_features "
            "and reset_classifier."
        )
    return linear[-1]


def _has_methods(model: nn.Module) -> bool:
    return all(callable(getattr(model, name, None)) for name in _METHODS)


def head_name(model: nn.Module) -> str:
    """The dotted name of the classification head (``"fc"`` for ResNets, ``"classifier.1"`` for EfficientNets).

    A model with ``get_classifier()`` names its head itself (``"classifier.fc"`` inside a
    ``DANN``); any other model's head is its final linear layer.

    Raises:
        ValueError: if the model has no linear layer to act as a head.
    """
    get_classifier = getattr(model, "get_classifier", None)
    if callable(get_classifier):
        head = get_classifier()
        for name, module in model.named_modules():
            if module is head and name:
                return name
    return _linear_head_name(model)


def get_head(model: nn.Module) -> nn.Linear:
    """The classification head of ``model`` (see :func:`head_name`)."""
    # get_submodule is typed as Module; the head is the linear layer head_name found
    return cast(nn.Linear, model.get_submodule(head_name(model)))


def replace_head(model: nn.Module, num_classes: int) -> nn.Linear:
    """Swap the head for a new ``nn.Linear`` with ``num_classes`` outputs; return the new head.

    The new head is on the old head's device and dtype and is trainable. Models with their own
    ``reset_classifier`` (``SmallCNN``, ``Conv4``, ``DANN``, ...) use it.

    Raises:
        ValueError: if ``num_classes < 2``.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes} is too small; a classifier head needs at least 2 classes.")
    own = getattr(model, "reset_classifier", None)
    if callable(own) and _has_methods(model) and not isinstance(model, ClassifierInterface):
        return own(num_classes)
    name = _linear_head_name(model)
    old = cast(nn.Linear, model.get_submodule(name))  # _linear_head_name names an nn.Linear
    new = nn.Linear(old.in_features, num_classes, device=old.weight.device, dtype=old.weight.dtype)
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)
    return new


def _head_input(model: nn.Module, head: nn.Module, x: Tensor) -> Tensor:
    """What ``head`` receives when ``model`` runs on ``x``: the pooled features."""
    captured: list[Tensor] = []
    handle = head.register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0]))
    try:
        model(x)
    finally:
        handle.remove()
    if not captured:
        raise ValueError(f"{type(model).__name__}'s forward never calls its head; give it a forward_features method.")
    return captured[0]


if TYPE_CHECKING:
    # The mixin is only ever a base next to an nn.Module subclass (see _interface_class): its methods
    # use nn.Module's API, which the type checker then knows.
    _ModuleBase = nn.Module
else:
    _ModuleBase = object


class ClassifierInterface(_ModuleBase):
    """The interface :func:`attach_interface` adds to a classifier whose head is its final ``nn.Linear``.

    A mixin: :func:`attach_interface` makes the model an instance of a class derived from this and
    the model's own class, with the same name, modules and ``state_dict`` keys.
    """

    _interface_base: type[nn.Module]

    def get_classifier(self) -> nn.Linear:
        """The head: the final linear layer (see :func:`head_name`)."""
        return cast(nn.Linear, self.get_submodule(_linear_head_name(self)))  # _linear_head_name names an nn.Linear

    def forward_features(self, x: Tensor) -> Tensor:
        """The pooled features the head sees, shape ``(N, num_features)``."""
        return _head_input(self, self.get_classifier(), x)

    def forward_head(self, features: Tensor) -> Tensor:
        """Class scores of ``features``, shape ``(N, num_classes)``."""
        return self.get_classifier()(features)

    @property
    def num_features(self) -> int:
        """Length of the feature vector (the head's ``in_features``)."""
        return self.get_classifier().in_features

    def reset_classifier(self, num_classes: int) -> nn.Linear:
        """A fresh ``nn.Linear(num_features, num_classes)`` head on the same device; returns it."""
        return replace_head(self, num_classes)

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        # pickle and deepcopy rebuild the derived class from the model's own (importable) class
        return _rebuild, (self._interface_base,), self.__getstate__()


#: One derived class per base class (a model's class must be the same object for every instance).
_INTERFACE_CLASSES: dict[type[nn.Module], type[nn.Module]] = {}


def _interface_class(base: type[nn.Module]) -> type[nn.Module]:
    # The base's name, module and qualname: repr, family look-ups (head_name) and the model name
    # recorded in fit's checkpoints (tlhelpers.core.checkpoint.run_identity) stay those of the base.
    # A plain dict rather than functools.cache: the type checker does not take classes as Hashable.
    if base not in _INTERFACE_CLASSES:
        attrs = {"_interface_base": base, "__module__": base.__module__, "__qualname__": base.__qualname__,
                 "__doc__": base.__doc__}
        _INTERFACE_CLASSES[base] = type(base.__name__, (ClassifierInterface, base), attrs)
    return _INTERFACE_CLASSES[base]


def _rebuild(base: type[nn.Module]) -> nn.Module:
    cls = _interface_class(base)
    return cls.__new__(cls)


def attach_interface(model: nn.Module) -> nn.Module:
    """Give a classifier ``forward_features``, ``forward_head``, ``num_features``, ``reset_classifier``, in place.

    A model that has them already is returned unchanged. Any other model becomes an instance of a
    class derived from its own (same name, ``isinstance`` still true): its modules, attribute names
    (``model.fc``) and ``state_dict`` keys do not change, so pretrained weights and checkpoints load
    as before, and it pickles and deep-copies.

    Returns:
        ``model`` itself.

    Raises:
        ValueError: if the model has no ``nn.Linear`` head.
    """
    if _has_methods(model):
        return model
    _linear_head_name(model)  # raises for a model without a linear head
    model.__class__ = _interface_class(type(model))
    return model


def has_interface(model: nn.Module) -> bool:
    """True when the functions of this module work on ``model`` (own methods or a linear head)."""
    if _has_methods(model):
        return True
    try:
        _linear_head_name(model)
    except ValueError:
        return False
    return True


def check_interface(model: nn.Module) -> None:
    """Raise the one-line error of :func:`forward_features` unless ``model`` has the interface.

    Raises:
        ValueError: if ``model`` has neither the methods nor a linear head.
    """
    if not _has_methods(model):
        _linear_head_name(model)


def forward_features(model: nn.Module, x: Tensor) -> Tensor:
    """The pooled feature vectors of ``x``: the model's own method, else the input of its linear head.

    Shape:
        ``x``: ``(N, C, H, W)``; returns ``(N, num_features(model))``.

    Raises:
        ValueError: if ``model`` has neither ``forward_features`` nor a linear head.
    """
    own = getattr(model, "forward_features", None)
    if callable(own):
        return own(x)
    return _head_input(model, get_head(model), x)


def forward_head(model: nn.Module, features: Tensor) -> Tensor:
    """Class scores of feature vectors: the model's own ``forward_head``, else its linear head.

    Shape:
        ``features``: ``(N, num_features(model))``; returns ``(N, num_classes)``.

    Raises:
        ValueError: if ``model`` has neither ``forward_head`` nor a linear head.
    """
    own = getattr(model, "forward_head", None)
    if callable(own):
        return own(features)
    return get_head(model)(features)


def num_features(model: nn.Module) -> int:
    """Length of the feature vector: ``model.num_features``, else the linear head's ``in_features``.

    Raises:
        ValueError: if ``model`` has neither ``num_features`` nor a linear head.
    """
    own = getattr(model, "num_features", None)
    if isinstance(own, int):
        return own
    return get_head(model).in_features


def reset_classifier(model: nn.Module, num_classes: int) -> nn.Module:
    """Put a fresh head for ``num_classes`` classes in place (features unchanged); return it.

    Raises:
        ValueError: if ``num_classes < 2`` or ``model`` has neither ``reset_classifier`` nor a linear head.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes} is too small; a classifier head needs at least 2 classes.")
    own = getattr(model, "reset_classifier", None)
    if callable(own):
        own(num_classes)
        return get_head(model)
    return replace_head(model, num_classes)
