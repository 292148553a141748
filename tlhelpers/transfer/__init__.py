"""Transfer methods of chapters 1-2: fine-tuning strategies, feature extraction, probes, retrieval, projections.

Import from the submodules; this package imports nothing on purpose (no side effects)."""
