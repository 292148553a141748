# The course's two commands: `make lab` (set up and open the notebooks) and `make test` (what CI runs).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The budget `make lab` runs the notebooks at: auto picks full with a CUDA GPU, laptop on a CPU with a network or
# with the data files present, reduced otherwise (tlhelpers.core.runtime.select_budget). Choose with
# `make lab BUDGET=reduced` (or laptop, full).
BUDGET ?= auto
export PATH := $(abspath $(BIN)):$(PATH)
# Jupyter refuses to run as root unless told; containers and some CI machines run as root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab test lint typecheck unit notebooks notebooks-full compat results api site bundle clean-venv

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[course,dev]'
	@touch $(STAMP)

# The budget is decided once here and handed to every notebook's kernel, so all chapters run at the same one.
lab: $(STAMP)
	@choice=$$(TLH_BUDGET=$(BUDGET) $(BIN)/python -m tlhelpers.core.runtime) || exit 1; \
	echo "Budget: $$choice. Choose with: make lab BUDGET=reduced (or laptop, full)."; \
	TLH_BUDGET=$${choice%% *} $(BIN)/jupyter lab --no-browser --ServerApp.root_dir=notebooks $(ROOT_FLAG) $(LAB_ARGS)

test: $(STAMP)
	@$(MAKE) --no-print-directory lint typecheck unit notebooks notebooks-full

lint: $(STAMP)
	$(BIN)/ruff check .

# The package's types (mypy, configured in pyproject.toml's [tool.mypy]).
typecheck: $(STAMP)
	$(BIN)/mypy

# pytest exits 5 when it collects nothing (e.g. every test deselected): report it, don't fail on it.
PYTEST := TLH_REDUCED=1 $(BIN)/python -m pytest -q -p no:cacheprovider
NO_TESTS_OK := rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests here"; exit 0; fi; exit $$rc

unit: $(STAMP)
	$(PYTEST) tests; $(NO_TESTS_OK)

# nbval reads a kernel's output only after each cell ends; a long cell's stream of progress-bar
# updates can overflow the kernel's message queue (ZMQ drops past 1000 queued messages) and lose
# the cell's final status message, a flaky "Timeout ... waiting for output". Redraw bars every 10 s.
notebooks: $(STAMP)
	TQDM_MININTERVAL=10 $(PYTEST) --nbval-lax --nbval-current-env notebooks examples; $(NO_TESTS_OK)

# Every notebook again in FULL mode (what a class runs on a GPU), offline on a CPU: tiny files in each
# dataset's real layout and weights files under torchvision's names, in a temporary folder;
# TLH_SMOKE=1 shrinks only the counts. See tools/full_mode_smoke.py.
notebooks-full: $(STAMP)
	TQDM_MININTERVAL=10 $(BIN)/python tools/full_mode_smoke.py

# The oldest versions pyproject.toml promises (Python 3.10, torch 2.2.2, torchvision 0.17.2, numpy 1.x):
# unit tests and notebooks (reduced) in a virtual environment outside the repository, built on first
# use (downloads torch: about 3 GB with its CUDA libraries). Slow; not part of `make test`.
# Settings: COMPAT_PYTHON, COMPAT_VENV, COMPAT_PIP_ARGS, COMPAT_PINS (see tools/compat.sh).
compat:
	bash tools/compat.sh

# Every benchmark in MODE (reduced|full), then the README's results table from their JSON.
MODE ?= reduced
results: $(STAMP)
	$(BIN)/python tools/run_benchmarks.py --mode $(MODE) $(RESULTS_ARGS)

api: $(STAMP)
	$(BIN)/python tools/gen_api.py

# The course website in site/: every notebook executed (at the budget chosen here, or SITE_ARGS="--budget
# reduced"), an index and the results page (tools/build_site.py). Progress bars redraw every 10 s, as above.
site: $(STAMP)
	TQDM_MININTERVAL=10 $(BIN)/python tools/build_site.py $(SITE_ARGS)

# A classroom bundle: every dataset and weights file the notebooks read, downloaded (resumably, checksums
# verified) into one folder to copy to a USB stick or a shared drive; then TLH_DATA=<folder>/data and
# TORCH_HOME=<folder>/torch run every notebook offline. BUNDLE_ARGS="--budget full --folder /media/usb/tl --check"
# (see tools/bundle.py).
bundle: $(STAMP)
	$(BIN)/python tools/bundle.py $(BUNDLE_ARGS)

clean-venv:
	rm -rf $(VENV)
