# binderless: `make run` starts the API locally, `make test` installs and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: run test lint package bench clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip<26.3"
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# configurable-http-proxy (proxy/package.json's pin) goes in front of local mode; without node (>= 18) or npm,
# `make run` says so and serves without it.
PROXY_STAMP = proxy/node_modules/.package-lock.json
$(PROXY_STAMP): proxy/package.json proxy/package-lock.json
	@if command -v npm >/dev/null && command -v node >/dev/null; then \
		cd proxy && npm ci --no-audit --no-fund --loglevel=error; \
	else echo "node and npm are not installed: local mode runs without configurable-http-proxy"; fi

run: $(STAMP) $(PROXY_STAMP)
	$(BIN)/python -m chalicelib.local

# The proxy first, so that every local mode the tests start runs as `make run` does (behind it).
# Two workers, each taking whole files (--dist loadfile: a file's local mode or moto world stays in one
# process); much of the suite waits on jupyter servers and subprocesses, so two halve the wait.
test: $(STAMP) $(PROXY_STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# make bench [BENCH_ARGS=--quick]: every benchmark, one table (bench/run.py); local mode alone: bench/local_bench.py
# Its JupyterHub peer's pins: bench/requirements.txt into .venv, configurable-http-proxy into proxy/node_modules.
BENCH_ARGS  ?=
BENCH_STAMP  = $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP) $(PROXY_STAMP) bench/requirements.txt
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

package: $(STAMP)
	rm -f out/sam.json out/deployment.zip && AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(BIN)/chalice package --stage prod out/

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache

# ---- infra/: lint and security-check the CloudFormation, deploy the stack, configure and deploy a stage.
# make infra-deploy [STACK=binderless] [PARAMS="VpcId=vpc-1 SubnetIds=subnet-a,subnet-b"]
# make deploy [STACK=binderless] [STAGE=prod]        (configure the stage, chalice deploy, gateway responses)
STACK         ?= binderless
STAGE         ?= prod
PARAMS        ?=
CHECKOV_VENV  ?= .venv-checkov
CHECKOV_STAMP  = $(CHECKOV_VENV)/.installed

.PHONY: infra-sync package-single infra-lint checkov infra-deploy configure deploy

infra-sync: $(STAMP)
	$(BIN)/python -m scripts.single_stack

package-single: $(STAMP)
	rm -rf out/single && AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(BIN)/chalice package --stage $(STAGE) --merge-template infra/single-stack.json out/single/

infra-lint: package-single
	$(BIN)/python -m scripts.single_stack --check
	test -f out/sam.json || $(MAKE) package
	$(BIN)/cfn-lint infra/binderless.yml out/sam.json out/single/sam.json

$(CHECKOV_STAMP):
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet "checkov==3.3.30"
	touch $(CHECKOV_STAMP)

checkov: $(CHECKOV_STAMP) package-single
	$(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation \
		-f infra/binderless.yml -f out/single/sam.json

infra-deploy:
	aws cloudformation deploy --template-file infra/binderless.yml --stack-name $(STACK) \
		--capabilities CAPABILITY_NAMED_IAM --no-fail-on-empty-changeset --parameter-overrides Name=$(STACK) $(PARAMS)

configure: $(STAMP)
	$(BIN)/python -m scripts.configure --stack $(STACK) --stage $(STAGE)

# chalice deploy puts its API definition back each time (resetting API Gateway's own error replies):
# scripts.gateway_responses sets them again and redeploys the stage.
deploy: configure
	$(BIN)/chalice deploy --stage $(STAGE)
	$(BIN)/python -m scripts.gateway_responses --stage $(STAGE)
