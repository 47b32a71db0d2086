# The README's two commands: `make demo` (the main job end to end) and `make test` (the test suite).
# Both create .venv and install everything they need; nothing is assumed to be installed beforehand.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export ACO_BERT_DATA_DIR ?= $(abspath ../shared/data)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: venv test test-all demo clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch is pinned to the CPU wheel in the `train` extra; xgboost-cpu avoids ~700 MB of CUDA libraries.
	$(PY) -m pip install -q -e ".[train,serve,dev,litellm,ray]"
	touch $@

venv: $(VENV)/.installed

test: venv
	$(PY) -m pytest -q

test-all: venv
	$(PY) -m pytest -q -m "slow or not slow"

demo: venv
	$(PY) -m aco_bert.demo --data-dir "$(ACO_BERT_DATA_DIR)"

clean:
	rm -rf $(VENV) checkpoints/*/ .pytest_cache
