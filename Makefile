# fwi-attn: `make all` runs the default study end to end, `make test` runs the tests.
# Both install what they need first (into .venv) and are safe to repeat.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= workflows/config/default.yaml
# The CPUs this process may run on (taskset/cgroup affinity), whatever OMP_NUM_THREADS says
# (`nproc` honours it, and a shell with OMP_NUM_THREADS=1 would run the study on one core).
CORES  ?= $(shell $(PYTHON) -c 'import os; print(len(os.sched_getaffinity(0)))' 2>/dev/null || nproc --all 2>/dev/null || echo 8)
STAMP  := $(VENV)/.installed

.PHONY: all recover configfile install test test-all lint bench gpu-check clean openfwi rehearse

all: install configfile
	$(BIN)/snakemake --cores $(CORES) --configfile=$(CONFIG) --rerun-incomplete all

# After a crash, a kill -9 or a power cut: Snakemake's lock outlives a killed run. Refuse while a
# snakemake process (its program, or a python running snakemake; not a shell whose text mentions
# it, like this recipe's own) runs in this folder; otherwise unlock and complete the study
# (training resumes from each run's last.pt). A complete study is left as it is, saying so.
recover: install configfile
	@for d in /proc/[0-9]*; do \
	  set -f; set -- $$(tr '\0' '\n' < $$d/cmdline 2>/dev/null | head -n 3 | tr ' \n' '_ '); set +f; \
	  case "$${1##*/} $${2##*/} $$3" in \
	    "snakemake "*|python*" snakemake "*|python*" -m snakemake") ;; \
	    *) continue ;; \
	  esac; \
	  if [ "$$(readlink $$d/cwd 2>/dev/null)" = "$(CURDIR)" ]; then \
	    echo "recover: a snakemake run (pid $${d#/proc/}) is still running in $(CURDIR): wait for it or stop it first (kill $${d#/proc/})"; exit 1; \
	  fi; \
	done
	$(BIN)/snakemake --unlock --configfile=$(CONFIG)
	@if $(BIN)/snakemake --dry-run --rerun-incomplete --configfile=$(CONFIG) all 2>&1 | grep -q '^Nothing to be done'; then \
	  echo "recover: the study of $(CONFIG) is complete; nothing to recover"; \
	else \
	  $(BIN)/snakemake --cores $(CORES) --configfile=$(CONFIG) --rerun-incomplete all; \
	fi

install: $(STAMP)

# OpenFWI's protocol beside OpenFWI's published numbers: InversionNet on the FlatVel-A- and
# CurveVel-A-like families of the openfwi preset, one study each (results/openfwi-<size>-<family>/),
# scored by the same metric code; each report prints ours beside the published figures.
# OPENFWI_SIZE=mini (default: a 2-core CPU, ~20 min) or full (OpenFWI's sample counts and epochs; a GPU).
OPENFWI_SIZE ?= mini
openfwi: install
	@test -f workflows/config/openfwi-protocol/$(OPENFWI_SIZE).yaml || { echo "make: OPENFWI_SIZE=$(OPENFWI_SIZE) is not one of: mini full"; exit 2; }
	for family in flatvel curvevel; do \
	  $(BIN)/snakemake all --cores $(CORES) --rerun-incomplete \
	    --configfile workflows/config/openfwi.yaml workflows/config/openfwi-protocol/$(OPENFWI_SIZE).yaml \
	    --config "study={name: openfwi-$(OPENFWI_SIZE)-$$family, dataset: $$family}" || exit 1; \
	done

# The paper preset at its real geometry on this machine's CPUs, with a handful of samples and one
# epoch (workflows/config/rehearse.yaml over paper.yaml: every variant, both stages, the transfer
# sets, one run's FWI refinement), into results/rehearse/; then each job's requested memory and
# time against what it used (its benchmark file). Under 10 min on 2 quiet cores: run it before a GPU.
REHEARSE_CONFIGS := workflows/config/paper.yaml workflows/config/rehearse.yaml
rehearse: install
	$(BIN)/snakemake --cores $(CORES) --rerun-incomplete --configfiles $(REHEARSE_CONFIGS) -- all results/rehearse/none/seed1/refine.json
	$(BIN)/python benchmarks/rehearse.py .

# Snakemake answers a missing --configfile with a Python traceback of its own: say it in one line.
configfile:
	@test -f "$(CONFIG)" || { echo "make: CONFIG=$(CONFIG) does not exist (presets: $$(ls workflows/config | tr "\n" " "))"; exit 2; }

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "fwi-attn needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch is pinned to the CPU wheel (2.13.0); installing it first keeps pip from pulling CUDA builds.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q

test-all: install
	$(BIN)/python -m pytest -q -m "slow or not slow"

# ruff (pyproject.toml's [tool.ruff]: pyflakes, import order, bugbear, docstrings) and Snakemake's linter.
lint: install
	$(BIN)/ruff check .
	$(BIN)/snakemake --lint --configfile=$(CONFIG)

bench: install
	$(BIN)/python benchmarks/bench_generate.py

# On one H100/H200, within 8 minutes: CUDA tests, the benchmarks' CUDA rows and a paper-preset
# mini study, written into the GPU section of docs/benchmarks.md. Without a GPU it says so and exits 0.
gpu-check: install
	$(BIN)/python benchmarks/gpu_check.py

clean:
	rm -rf results .snakemake
