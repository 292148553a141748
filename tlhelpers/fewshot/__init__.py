"""Few-shot learning: episodic sampling, Conv-4, Prototypical Networks, MAML, ProtoMAML, Reptile, baselines.

Import from the submodules, e.g. ``from tlhelpers.fewshot.sampler import EpisodeSampler`` or
``from tlhelpers.fewshot.maml import meta_gradient``. Everything is plain PyTorch; MAML's inner
loop is written with ``torch.func`` (``functional_call``, ``grad``, ``vmap``). This package imports
nothing on purpose, so ``import tlhelpers.fewshot`` stays instant and has no side effects.
"""
