"""Course scaffolding: generated and packaged stand-in data, domain pairs and experiments, strategy advice and map, results tables, notebook widgets.

Import from the submodules; this package imports nothing on purpose (no side effects)."""
