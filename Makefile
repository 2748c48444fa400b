# InferOpt: the commands a user runs. Each target sets up what it needs
# (.venv, Redis, chromium) and installs nothing when that is already done.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Extra arguments for pytest, e.g. `make test PYTEST_ARGS="-k workers -x"`.
PYTEST_ARGS ?=
# Extra arguments for benchmarks/load.py, e.g. `make benchmark-load LOAD_ARGS="--users 10 --jobs 20"`.
LOAD_ARGS ?=

.PHONY: help run test lint format benchmark benchmark-compression benchmark-llm benchmark-serving benchmark-load gpu-check install lock

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

run: ## serve the dashboard on 127.0.0.1:PORT (default 8000) plus one Celery worker (Ctrl-C stops)
	@bash scripts/run.sh

test: ## lint, format check, migrations check and the whole pytest suite
	@bash scripts/test.sh $(PYTEST_ARGS)

lint: ## ruff check and ruff format --check
	@bash scripts/venv.sh dev bash -c 'ruff check . && ruff format --check .'

format: ## apply ruff's formatting and safe fixes
	@bash scripts/venv.sh dev bash -c 'ruff format . && ruff check --fix .'

benchmark: ## the MiniLM CPU benchmark (benchmarks/minilm_cpu.py)
	@bash scripts/venv.sh runtime python benchmarks/minilm_cpu.py

benchmark-compression: ## compression on digits-cnn and MiniLM: static INT8, QAT, pruning, distillation, OpenVINO (benchmarks/compression.py)
	@bash scripts/venv.sh runtime python benchmarks/compression.py

benchmark-llm: ## the tiny-LM CPU benchmark: PyTorch vs llama.cpp F16/Q8_0/Q5_K_M/Q4_K_M (benchmarks/llm_cpu.py)
	@bash scripts/venv.sh runtime python benchmarks/llm_cpu.py

benchmark-load: ## 50 users browse job pages while 100 small jobs run on 2 workers: p95 page latency, no job lost (benchmarks/load.py; PostgreSQL on 127.0.0.1:5432)
	@source scripts/lib.sh && ensure_redis_binary && bash scripts/venv.sh runtime python benchmarks/load.py $(LOAD_ARGS)

benchmark-serving: ## tiny-LM speculative decoding and quantized KV cache, digits-cnn batching under a p95 budget (benchmarks/llm_serving.py)
	@bash scripts/venv.sh runtime python benchmarks/llm_serving.py

gpu-check: ## the GPU tests (pytest -m gpu tests/gpu); passes when there are none
	@bash scripts/gpu-check.sh $(PYTEST_ARGS)

install: ## reinstall the dev requirements into .venv even if unchanged
	@INFEROPT_FORCE_INSTALL=1 bash scripts/venv.sh dev true

lock: ## rewrite constraints.txt from the versions installed in .venv
	@bash scripts/venv.sh dev bash scripts/lock.sh
