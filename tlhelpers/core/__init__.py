"""Core: the runtime (device, mode, data root, threads), checkpoints and the plots' house style.

Import from the submodules; this package imports nothing on purpose (no side effects)."""
