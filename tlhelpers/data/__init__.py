"""Datasets for the course: uint8 image tensors, offline generators and torchvision wrappers.

Import from the submodules, e.g. ``from tlhelpers.data.tensor_dataset import ImageTensorDataset``
or ``from tlhelpers.course.shapes import make_shapes``. This package imports nothing on purpose, so
``import tlhelpers.data`` stays instant and has no side effects.
"""
