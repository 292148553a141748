"""Helpers for the course *Transfer Learning for Computer Vision*.

The names a project needs are importable from the package itself, e.g.
``from tlhelpers import build_classifier, fit``; the full toolbox lives in the submodules
(``from tlhelpers.fewshot.plots import plot_episode``). The top-level names are loaded lazily
(PEP 562): ``import tlhelpers`` imports neither torch nor any submodule, and a name's module is
imported the first time the name is used. Importing the package has no side effects (no seeding, no device
probing, no downloads) beyond registering the flat layout's old module paths (see ``_compat``).

Example:
    >>> from tlhelpers import build_classifier, fit, get_device
    >>> built = build_classifier("resnet18", num_classes=5)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> the module that defines it. The ONLY place that maps names to modules: when a
# module moves, change its path here (tests/test_public_api.py checks every entry resolves).
# A name may not equal a submodule of this package (``param_groups``, ``mini_resnet``): importing
# the submodule would rebind the package attribute to the module.
_EXPORTS: dict[str, str] = {
    # runtime: device, seeds, mode, threads
    "get_device": "tlhelpers.core.runtime",
    "seed_everything": "tlhelpers.core.runtime",
    "describe": "tlhelpers.core.runtime",
    "is_reduced": "tlhelpers.core.runtime",
    "budget": "tlhelpers.core.runtime",
    "select_budget": "tlhelpers.core.runtime",
    "data_root": "tlhelpers.core.runtime",
    "loader_kwargs": "tlhelpers.core.runtime",
    "configure_threads": "tlhelpers.core.runtime",
    # data: image tensors, folders, generic datasets
    "ImageTensorDataset": "tlhelpers.data.tensor_dataset",
    "to_tensor_dataset": "tlhelpers.data.tensor_cache",
    "balanced_indices": "tlhelpers.data.balanced",
    "load_dataset": "tlhelpers.data.torchvision_sets",
    "DatasetUnavailableError": "tlhelpers.data.torchvision_sets",
    "make_shapes": "tlhelpers.course.shapes",
    # preprocessing
    "weights_preset": "tlhelpers.data.preprocessing",
    "plain_preset": "tlhelpers.data.preprocessing",
    "image_transforms": "tlhelpers.data.preprocessing",
    "stored_size": "tlhelpers.data.preprocessing",
    "IMAGENET_MEAN": "tlhelpers.data.preprocessing",
    "IMAGENET_STD": "tlhelpers.data.preprocessing",
    # models, and one interface for all of them (forward_features / forward_head / num_features)
    "build_classifier": "tlhelpers.models.backbones",
    "BuiltModel": "tlhelpers.models.backbones",
    "list_architectures": "tlhelpers.models.backbones",
    "get_head": "tlhelpers.models.api",
    "replace_head": "tlhelpers.models.api",
    "head_name": "tlhelpers.models.api",
    "attach_interface": "tlhelpers.models.api",
    "forward_features": "tlhelpers.models.api",
    "forward_head": "tlhelpers.models.api",
    "num_features": "tlhelpers.models.api",
    "reset_classifier": "tlhelpers.models.api",
    "load_backbone_state": "tlhelpers.models.backbones",
    "WeightsUnavailableError": "tlhelpers.models.backbones",
    "SmallCNN": "tlhelpers.models.smallcnn",
    "MiniResNet": "tlhelpers.models.mini_resnet",
    "MiniVGG": "tlhelpers.models.mini_vgg",
    "Conv4": "tlhelpers.models.conv4",
    "DigitNet": "tlhelpers.domain.dann",
    # training
    "fit": "tlhelpers.training.engine",
    "evaluate": "tlhelpers.training.engine",
    "predict": "tlhelpers.training.engine",
    "History": "tlhelpers.training.engine",
    "StepOutput": "tlhelpers.training.engine",
    "TrainState": "tlhelpers.training.engine",
    "classification_step": "tlhelpers.training.engine",
    "apply_gradients": "tlhelpers.training.engine",
    "distributed_loader": "tlhelpers.training.engine",
    "warmup_cosine": "tlhelpers.training.schedules",
    "inverse_decay": "tlhelpers.training.schedules",
    "discriminative_groups": "tlhelpers.training.param_groups",
    "layerwise_groups": "tlhelpers.training.param_groups",
    "freeze": "tlhelpers.training.freezing",
    "unfreeze": "tlhelpers.training.freezing",
    "unfreeze_last": "tlhelpers.training.freezing",
    "freeze_batchnorm": "tlhelpers.training.freezing",
    "set_trainable": "tlhelpers.training.freezing",
    "stage_names": "tlhelpers.training.freezing",
    "trainable_stages": "tlhelpers.training.freezing",
    "count_parameters": "tlhelpers.training.freezing",
    # checkpoints
    "atomic_save": "tlhelpers.core.checkpoint",
    "safe_load": "tlhelpers.core.checkpoint",
    "run_checkpoint": "tlhelpers.core.checkpoint",
    "restore_training": "tlhelpers.core.checkpoint",
    "CheckpointError": "tlhelpers.core.checkpoint",
    "fingerprint_dataset": "tlhelpers.core.checkpoint",
    "loader_state": "tlhelpers.core.checkpoint",
    "load_loader_state": "tlhelpers.core.checkpoint",
    # features, probes, retrieval
    "extract_features": "tlhelpers.transfer.features",
    "valid_layers": "tlhelpers.transfer.features",
    "LayerNotFoundError": "tlhelpers.transfer.features",
    "train_linear_probe": "tlhelpers.transfer.probe",
    "sklearn_probe": "tlhelpers.transfer.probe",
    "probe_accuracy": "tlhelpers.transfer.probe",
    "ProbeResult": "tlhelpers.transfer.probe",
    "cosine_neighbors": "tlhelpers.transfer.retrieval",
    "precision_at_k": "tlhelpers.transfer.retrieval",
    # domain adaptation
    "grad_reverse": "tlhelpers.domain.grl",
    "GradientReversal": "tlhelpers.domain.grl",
    "grl_lambda": "tlhelpers.domain.grl",
    "DANN": "tlhelpers.domain.dann",
    "DomainDiscriminator": "tlhelpers.domain.dann",
    "domain_accuracy": "tlhelpers.domain.dann",
    "dann_step": "tlhelpers.domain.steps",
    "source_only_step": "tlhelpers.domain.steps",
    "MMDStep": "tlhelpers.domain.steps",
    "MultiKernelMMD": "tlhelpers.domain.mmd",
    "PairedLoader": "tlhelpers.domain.paired",
    "UnlabeledDataset": "tlhelpers.domain.paired",
    "RepeatLoader": "tlhelpers.domain.paired",
    "proxy_a_distance": "tlhelpers.domain.a_distance",
    # few-shot learning
    "Episode": "tlhelpers.fewshot.sampler",
    "EpisodeSampler": "tlhelpers.fewshot.sampler",
    "stack_episodes": "tlhelpers.fewshot.sampler",
    "prototypes": "tlhelpers.fewshot.protonet",
    "squared_distance_logits": "tlhelpers.fewshot.protonet",
    "protonet_step": "tlhelpers.fewshot.protonet",
    "protonet_predict": "tlhelpers.fewshot.protonet",
    "maml_step": "tlhelpers.fewshot.maml",
    "maml_predict": "tlhelpers.fewshot.maml",
    "meta_gradient": "tlhelpers.fewshot.maml",
    "reptile_step": "tlhelpers.fewshot.reptile",
    "reptile_predict": "tlhelpers.fewshot.reptile",
    "meta_train": "tlhelpers.fewshot.training",
    "evaluate_episodes": "tlhelpers.fewshot.evaluation",
    "EvalResult": "tlhelpers.fewshot.evaluation",
    "confidence_interval": "tlhelpers.fewshot.evaluation",
    "linear_probe_predict": "tlhelpers.fewshot.baseline",
    # choosing a strategy
    "recommend": "tlhelpers.course.recommend",
    # diagnostics: what the data and the network look like
    "show_batch": "tlhelpers.data.preview",
    "show_augmentations": "tlhelpers.data.preview",
    "lr_range_test": "tlhelpers.training.lr_finder",
    "plot_lr_finder": "tlhelpers.training.lr_finder",
    "grad_cam": "tlhelpers.transfer.gradcam",
    "plot_gradcam": "tlhelpers.transfer.gradcam",
    "top_losses": "tlhelpers.course.diagnostics",
    "plot_top_losses": "tlhelpers.course.diagnostics",
    "plot_confusion_matrix": "tlhelpers.course.diagnostics",
    # few-shot: ProtoMAML
    "protomaml_step": "tlhelpers.fewshot.protomaml",
    "protomaml_predict": "tlhelpers.fewshot.protomaml",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` on first use and cache the object (PEP 562).

    Raises:
        AttributeError: if ``name`` is not a public name of the package.
    """
    module_path = _EXPORTS.get(name)
    if module_path is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_path), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


# The flat layout's old module paths (``tlhelpers.engine`` ...) keep working for one release, with a
# DeprecationWarning: a finder for exactly those names goes last on sys.meta_path (stdlib only, so
# this imports no torch). See tlhelpers/_compat.py.
from tlhelpers import _compat  # noqa: E402

_compat.install()
