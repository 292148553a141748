"""Training: the loop (``fit``), schedules, parameter groups and freezing.

Import from the submodules; this package imports nothing on purpose (no side effects)."""
