# One command to set up and run the main job (`make demo`), one for the tests (`make test`).
# TORCH: the CPU build by default (these machines have 2.13.0 on disk); on a CUDA machine use
#   make setup TORCH="torch --index-url https://download.pytorch.org/whl/cu124"
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
RUN    ?= runs/demo

.PHONY: setup demo test test-fast lint bench bench-quick clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[serve,test,bench,dev,export]"
	touch $@

# Train the default classifier (SmolLM2-135M-Instruct GGUF, SMS spam) and print its metrics.
demo: setup
	$(VENV)/bin/llmclassify train --output $(RUN) --overwrite
	$(VENV)/bin/llmclassify predict $(RUN) "WINNER!! Claim your free prize: call 09061701461 now" "Are we still on for lunch tomorrow?"

# Every test, the slow real-model ones included.
test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

# Speed: ours vs a reference-style loop vs Hugging Face (full: 40+ min on 2 cores).
bench: setup
	$(PY) benchmarks/bench.py --out benchmarks/results/full

bench-quick: setup
	$(PY) benchmarks/bench.py --quick --out benchmarks/results/quick

clean:
	rm -rf $(VENV) runs build *.egg-info
