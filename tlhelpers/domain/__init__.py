"""Unsupervised domain adaptation: gradient reversal, DANN, MMD, proxy A-distance, domain pairs.

Import from the submodules, e.g. ``from tlhelpers.domain.grl import grad_reverse`` or
``from tlhelpers.domain.dann import DANN``. The package imports nothing on purpose, so
``import tlhelpers.domain`` stays instant and has no side effects.

Modules:
    grl: the gradient reversal layer and the DANN ``lambda`` ramp.
    dann: a small digit CNN, a domain discriminator and the ``DANN`` model that joins them.
    paired: source/target batches for training, with the target's labels dropped.
    steps: ``step_fn`` objects for :func:`tlhelpers.training.engine.fit` (source-only, DANN, MMD).
    mmd: the multi-kernel Gaussian maximum mean discrepancy (DAN's alignment loss).
    a_distance: the proxy A-distance between two sets of features.
    alignment: the proxy A-distance and MMD of a trained model's features on two test sets.
    pairs: source/target dataset pairs by name (reduced and full mode).
    experiment: train one method on a pair with a shared budget (notebook and benchmark).
    visual: features, t-SNE and the chapter's figures.
    few_labels: fine-tuning with a few labelled target images after adaptation (semi-supervised), and how many
        labels the unsupervised stage saves.
"""
