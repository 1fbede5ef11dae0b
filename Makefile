# Two commands do all set-up on a fresh machine:
#   make demo   — the whole of TextSSR on the embedded tiny corpus (CPU, no downloads)
#   make test   — the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LAUNCH := $(BIN)/accelerate launch --cpu --num_machines 1 --num_processes 1 --mixed_precision no --dynamo_backend no --num_cpu_threads_per_process 2

.PHONY: install demo test bench clean-demo

$(STAMP): requirements.txt pyproject.toml setup.py textssr/data/_jpeg_window.c diffusers/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

demo: $(STAMP)
	@start=$$(date +%s); \
	set -e; \
	$(BIN)/python -m textssr.tiny_data --out data/tiny; \
	$(LAUNCH) train_vae.py --config configs/tiny/train_vae_cfg.py; \
	$(LAUNCH) train_diff.py --config configs/tiny/train_diff_step1_cfg.py; \
	$(LAUNCH) train_diff.py --config configs/tiny/train_diff_step2_cfg.py; \
	$(BIN)/python infer.py --config configs/tiny/infer_cfg.py; \
	$(BIN)/python eval.py --results output/tiny; \
	echo "demo finished in $$(( $$(date +%s) - start )) s (after installation)"

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean-demo:
	rm -rf data/tiny model/tiny output/tiny
