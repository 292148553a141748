"""Helpers for the course *Transfer Learning for Computer Vision*.

The names a project needs are importable from the package itself, e.g.
``from tlhelpers import build_classifier, fit``; the full toolbox lives in the submodules
(``from tlhelpers.fewshot.plots import plot_episode``). The top-level names are loaded lazily
(PEP 562): ``import tlhelpers`` imports neither torch nor any submodule, and a name's module is
imported the first time the name is used. Importing the package has no side effects: no seeding,
no device probing, no downloads.

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
    "get_device": "tlhelpers.runtime",
    "seed_everything": "tlhelpers.runtime",
    "describe": "tlhelpers.runtime",
    "is_reduced": "tlhelpers.runtime",
    "data_root": "tlhelpers.runtime",
    "loader_kwargs": "tlhelpers.runtime",
    "configure_threads": "tlhelpers.runtime",
    # data: image tensors, folders, generic datasets
    "ImageTensorDataset": "tlhelpers.data.tensor_dataset",
    "to_tensor_dataset": "tlhelpers.data.tensor_cache",
    "balanced_indices": "tlhelpers.data.balanced",
    "load_dataset": "tlhelpers.data.torchvision_sets",
    "DatasetUnavailableError": "tlhelpers.data.torchvision_sets",
    "make_shapes": "tlhelpers.data.shapes",
    # preprocessing
    "weights_preset": "tlhelpers.preprocessing",
    "plain_preset": "tlhelpers.preprocessing",
    "image_transforms": "tlhelpers.preprocessing",
    "stored_size": "tlhelpers.preprocessing",
    "IMAGENET_MEAN": "tlhelpers.preprocessing",
    "IMAGENET_STD": "tlhelpers.preprocessing",
    # models, and one interface for all of them (forward_features / forward_head / num_features)
    "build_classifier": "tlhelpers.backbones",
    "BuiltModel": "tlhelpers.backbones",
    "list_architectures": "tlhelpers.backbones",
    "get_head": "tlhelpers.model_api",
    "replace_head": "tlhelpers.model_api",
    "head_name": "tlhelpers.model_api",
    "attach_interface": "tlhelpers.model_api",
    "forward_features": "tlhelpers.model_api",
    "forward_head": "tlhelpers.model_api",
    "num_features": "tlhelpers.model_api",
    "reset_classifier": "tlhelpers.model_api",
    "load_backbone_state": "tlhelpers.backbones",
    "WeightsUnavailableError": "tlhelpers.backbones",
    "SmallCNN": "tlhelpers.smallcnn",
    "MiniResNet": "tlhelpers.mini_resnet",
    "MiniVGG": "tlhelpers.mini_vgg",
    "Conv4": "tlhelpers.fewshot.conv4",
    "DigitNet": "tlhelpers.domain.dann",
    # training
    "fit": "tlhelpers.engine",
    "evaluate": "tlhelpers.engine",
    "predict": "tlhelpers.engine",
    "History": "tlhelpers.engine",
    "StepOutput": "tlhelpers.engine",
    "TrainState": "tlhelpers.engine",
    "classification_step": "tlhelpers.engine",
    "apply_gradients": "tlhelpers.engine",
    "distributed_loader": "tlhelpers.engine",
    "warmup_cosine": "tlhelpers.schedules",
    "inverse_decay": "tlhelpers.schedules",
    "discriminative_groups": "tlhelpers.param_groups",
    "layerwise_groups": "tlhelpers.param_groups",
    "freeze": "tlhelpers.freezing",
    "unfreeze": "tlhelpers.freezing",
    "unfreeze_last": "tlhelpers.freezing",
    "freeze_batchnorm": "tlhelpers.freezing",
    "set_trainable": "tlhelpers.freezing",
    "stage_names": "tlhelpers.freezing",
    "trainable_stages": "tlhelpers.freezing",
    "count_parameters": "tlhelpers.freezing",
    # checkpoints
    "atomic_save": "tlhelpers.checkpoint",
    "safe_load": "tlhelpers.checkpoint",
    "run_checkpoint": "tlhelpers.checkpoint",
    "restore_training": "tlhelpers.checkpoint",
    "CheckpointError": "tlhelpers.checkpoint",
    "fingerprint_dataset": "tlhelpers.checkpoint",
    "loader_state": "tlhelpers.checkpoint",
    "load_loader_state": "tlhelpers.checkpoint",
    # features, probes, retrieval
    "extract_features": "tlhelpers.features",
    "valid_layers": "tlhelpers.features",
    "LayerNotFoundError": "tlhelpers.features",
    "train_linear_probe": "tlhelpers.probe",
    "sklearn_probe": "tlhelpers.probe",
    "probe_accuracy": "tlhelpers.probe",
    "ProbeResult": "tlhelpers.probe",
    "cosine_neighbors": "tlhelpers.retrieval",
    "precision_at_k": "tlhelpers.retrieval",
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
    "recommend": "tlhelpers.strategy",
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
