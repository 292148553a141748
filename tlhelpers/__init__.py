"""Helpers for the course *Transfer Learning for Computer Vision*.

Import what you need from its submodules, e.g. ``from tlhelpers.engine import fit``.
Importing the package has no side effects: no seeding, no device probing, no downloads.
"""

__version__ = "0.1.0"
