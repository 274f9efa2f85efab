# Two commands on a fresh machine: `make demo` and `make test`. Both set up first (idempotent).
.PHONY: setup setup-test demo test test-fast typecheck lint images bench clean help

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup:  ## venv in .venv with the pinned stack (no-op when up to date)
	@bash scripts/setup.sh

setup-test:  ## setup, plus what only the tests need (chromium, helm, dclint)
	@bash scripts/setup.sh --test

demo: setup  ## run the flywheel on the embedded default (convert -> ingest -> stats -> models)
	@bash scripts/demo.sh

test: setup-test typecheck  ## mypy, then the whole test suite, including slow tests with real small models (fetched first, offline)
	HF_HUB_OFFLINE=1 .venv/bin/flywheel models fetch
	HF_HUB_OFFLINE=1 .venv/bin/python -m pytest

test-fast: setup-test  ## the suite without slow (real-model) tests
	HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -m "not slow"

typecheck: setup  ## mypy over orchestrator/ and services/ (strict; configuration in pyproject.toml)
	.venv/bin/mypy

images: setup  ## build the four images (Docker, else buildah), check their files, run the platform from them
	@bash scripts/images.sh

lint: setup  ## ruff, and pylint's duplicate-code check (R0801; block size and exceptions in pyproject.toml)
	.venv/bin/ruff check orchestrator services tests bench
	.venv/bin/pylint orchestrator services bench

bench: setup  ## benchmarks (print a table, write bench/results/*.json; about an hour on 2 CPU cores)
	HF_HUB_OFFLINE=1 .venv/bin/flywheel models fetch
	HF_HUB_OFFLINE=1 .venv/bin/python -m bench.ingest
	HF_HUB_OFFLINE=1 .venv/bin/python -m bench.training_throughput
	HF_HUB_OFFLINE=1 .venv/bin/python -m bench.learning_curve
	HF_HUB_OFFLINE=1 .venv/bin/python -m bench.learning_curve --sources standin --sizes 250 500 800 all --seeds 0 1 --no-lm --json bench/results/learning_curve_standin.json
	HF_HUB_OFFLINE=1 .venv/bin/python -m bench.embedding_distill
	HF_HUB_OFFLINE=1 .venv/bin/python -m bench.api
	HF_HUB_OFFLINE=1 .venv/bin/python -m bench.gateway
	HF_HUB_OFFLINE=1 .venv/bin/python -m bench.pruning
	HF_HUB_OFFLINE=1 .venv/bin/python -m bench.selective
	HF_HUB_OFFLINE=1 .venv/bin/python -m bench.contention
	HF_HUB_OFFLINE=1 .venv/bin/python -m bench.default_job

clean:  ## remove local state (logs, queue, models cache); keeps .venv
	rm -rf var
