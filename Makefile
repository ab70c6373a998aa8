# rowgym — every target installs or starts what it needs; see README.md.
PY      := .venv/bin/python
ROWGYM  := .venv/bin/rowgym
SHOP_PORT ?= 8765
RUNS    ?= runs

.PHONY: help setup env-up env-down quickstart demo learn test test-fast lint bench check-all policy-up policy-down model-tiny repopatch-verify synth-build shop-screenshots clean

help:
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

setup: ## venv + rowgym with all extras + Debian chromium
	bash scripts/bootstrap.sh

env-up: setup ## start everything environments need: Docker + sandbox image, the web shop, the vLLM venv
	bash scripts/env_up.sh
	$(PY) -m rowgym.envs.shop.server start --port $(SHOP_PORT)
	bash scripts/setup_vllm.sh >/dev/null

env-down: ## stop what env-up started
	-$(PY) -m rowgym.envs.shop.server stop --port $(SHOP_PORT)
	bash scripts/env_down.sh

quickstart: setup ## the main job: collect expert trajectories on the tool-API envs and show a summary
	$(ROWGYM) envs list
	$(ROWGYM) collect rowgym/ToolAPI-Retail-v0 --agent expert --noise 0.2 --episodes 200 --out $(RUNS)/retail-expert
	$(ROWGYM) collect rowgym/ToolAPI-Retail-v0 --agent random --episodes 200 --out $(RUNS)/retail-random
	$(ROWGYM) show $(RUNS)/retail-expert --episode 0
	$(ROWGYM) export $(RUNS)/retail-expert --format parquet

demo: setup ## the learning demo: tiny model -> expert data -> SFT -> GRPO -> held-out success before/after, plot
	$(PY) -m rowgym.trainers.demo --out $(RUNS)/demo

learn: setup ## learning benchmark on Airline (cancel/cabin/baggage): SFT start vs more SFT, RSFT, DPO, GRPO x2 at equal budget
	$(PY) -m rowgym.trainers.learn --out $(RUNS)/learn

test: env-up ## the full test suite, with Docker, Chromium and the shop started first
	@# exit 5 = no tests collected: not a build failure (but a run that tests nothing is worthless)
	ROWGYM_REQUIRE_ALL=1 $(PY) -m pytest -q -p no:cacheprovider tests $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && exit 0; exit $$rc

test-fast: setup ## unit tests only (no docker/browser/vllm/train markers)
	$(PY) -m pytest -q -m "not docker and not browser and not vllm and not train and not slow" tests

lint: setup ## ruff, and the package layers as import-linter contracts (.importlinter)
	$(PY) -m ruff check rowgym envs agents rollouts rewards trainers sandboxes evals tests benchmarks examples
	bash scripts/lint_imports.sh

bench: env-up model-tiny ## performance benchmarks (the tiny model: its tokenizer); ratios measured side by side -> results/bench.json + bench.md (no pass/fail)
	$(PY) benchmarks/results.py --reset
	$(PY) benchmarks/bench_toolapi.py
	$(PY) benchmarks/bench_rollouts.py
	$(PY) benchmarks/bench_sandbox.py
	$(PY) benchmarks/bench_repopatch.py
	$(PY) benchmarks/bench_shop.py
	$(PY) benchmarks/bench_grpo.py
	$(PY) benchmarks/bench_async_rl.py
	$(PY) benchmarks/bench_remote_env.py
	$(PY) benchmarks/results.py

check-all: setup ## run the env checker on every registered environment
	$(ROWGYM) check --all

policy-up: setup ## start the vLLM policy server on the tiny model (own venv)
	bash scripts/policy_up.sh

policy-down: ## stop the policy server
	bash scripts/policy_down.sh

repopatch-verify: env-up ## gold patch -> 1 and empty patch -> 0 on every corpus + synthesized task; prints the count
	$(PY) -m rowgym.envs.repopatch.verify --all

synth-build: env-up ## synthesize and validate every repo-patch task from the real libraries (cached)
	$(PY) -m rowgym.envs.repopatch.synth.build

model-tiny: setup ## build the tiny Qwen3 model (offline, deterministic)
	$(ROWGYM) model build-tiny

shop-screenshots: setup
	$(PY) -m rowgym.envs.shop.screenshots --out docs/img

clean:
	rm -rf $(RUNS) .pytest_cache
