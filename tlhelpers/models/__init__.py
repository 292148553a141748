"""Models: torchvision classifiers with pretrained weights, the course's small CNNs and one interface for all.

Import from the submodules; this package imports nothing on purpose (no side effects)."""
