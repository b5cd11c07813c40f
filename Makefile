# Brook developer entry points. `make run` starts a local cluster, `make test` runs the suite.
# Both install what they need: a virtualenv in .venv, buf in .tools, etcd from apt when missing.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
BUF := .tools/node_modules/.bin/buf
# grpcurl, pinned, built with `go install` into .tools/bin (tests drive the cluster with it).
GRPCURL_VERSION := v1.9.3
GRPCURL := .tools/bin/grpcurl
# promtool (Prometheus 3.16; its Go module is versioned v0.316.0), pinned, built with `go
# install` into .tools/bin: tests/observability checks ops/prometheus's alert rules with it.
# `remove_all_sd` leaves out the cloud service discoveries (not needed to check rules and
# static configs): a cold build takes ~4 minutes on 2 cores instead of ~20.
PROMETHEUS_VERSION := v0.316.0
PROMTOOL := .tools/bin/promtool
# kustomize, pinned, built with `go install` into .tools/bin: `make k8s-validate` (and
# tests/k8s) render the k8s/ overlays with it and validate them offline against the schemas
# of K8S_VERSION (kubernetes-validate, a dev dependency, bundles them).
KUSTOMIZE_VERSION := v5.8.2
KUSTOMIZE := .tools/bin/kustomize
K8S_VERSION := 1.30.0
PROTO_SRC := $(wildcard protos/brook/v1/*.proto)
GEN_STAMP := brook/v1/.generated
PROTO_ALL := $(shell find protos -name "*.proto")
DATA ?= ./data
NODES ?= 3
DURATION ?= 300

.PHONY: all setup proto proto-release typecheck lint test test-fast run bench bench-storage bench-cluster bench-scale bench-planner bench-tls bench-kafka chaos clean etcd chromium fmt

all: test

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	touch $@

$(BUF):
	mkdir -p .tools
	cd .tools && npm install --silent --no-fund --no-audit @bufbuild/buf@1.75.0

$(GEN_STAMP): $(VENV)/.installed $(PROTO_ALL) scripts/genproto.py
	$(PY) scripts/genproto.py
	touch $@

$(GRPCURL):
	mkdir -p .tools/bin
	GOBIN=$(abspath .tools/bin) go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)

$(KUSTOMIZE):
	mkdir -p .tools/bin
	GOBIN=$(abspath .tools/bin) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

# Every overlay in k8s/overlays, rendered and validated strictly (an unknown field is an
# error, and so is a kind without a schema: kubernetes-validate only warns about those).
.PHONY: k8s-validate
k8s-validate: $(VENV)/.installed $(KUSTOMIZE)
	@mkdir -p .tools/k8s
	@for overlay in $(notdir $(wildcard k8s/overlays/*)); do \
	  $(KUSTOMIZE) build k8s/overlays/$$overlay > .tools/k8s/$$overlay.yaml || exit 1; \
	  out=$$($(VENV)/bin/kubernetes-validate --strict -k $(K8S_VERSION) .tools/k8s/$$overlay.yaml 2>&1); \
	  status=$$?; printf '%s\n' "$$out" | grep -v '^INFO'; \
	  if [ $$status -ne 0 ] || printf '%s\n' "$$out" | grep -qv '^INFO'; then \
	    echo "k8s/overlays/$$overlay: invalid for Kubernetes $(K8S_VERSION)"; exit 1; fi; \
	  echo "k8s/overlays/$$overlay: $$(printf '%s\n' "$$out" | grep -c '^INFO') resources valid for Kubernetes $(K8S_VERSION)"; \
	done

$(PROMTOOL):
	mkdir -p .tools/bin
	GOBIN=$(abspath .tools/bin) go install -tags remove_all_sd github.com/prometheus/prometheus/cmd/promtool@$(PROMETHEUS_VERSION)

# The alert rules: well-formed, and their unit tests pass (tests/observability runs both).
.PHONY: check-rules
check-rules: $(PROMTOOL)
	$(PROMTOOL) check rules ops/prometheus/brook-alerts.yml
	cd ops/prometheus && $(abspath $(PROMTOOL)) test rules brook-alerts.test.yml

setup: $(VENV)/.installed $(GEN_STAMP) $(GRPCURL) $(KUSTOMIZE) etcd

proto: $(GEN_STAMP)

# etcd comes from the system packages; we install it when missing (root) or say how.
etcd:
	@command -v etcd >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "installing etcd-server from the system packages"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client) >/dev/null; \
	  else \
	    echo "etcd is missing: run 'sudo apt-get install -y etcd-server etcd-client'"; exit 1; \
	  fi; }

# Chromium, for the web console's real-browser test (tests/coordinator/test_console_browser.py).
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "installing chromium from the system packages"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null; \
	  else \
	    echo "chromium is missing (the console test will skip): sudo apt-get install -y chromium"; \
	  fi; }

# Python sources ruff checks: Brook's own code, not the generated brook/v1 and brook/internal.
RUFF_PATHS := $(filter-out brook/v1 brook/internal,$(wildcard brook/*)) storage services client tests bench scripts
# The released v1 API that `buf breaking` compares against (refresh with `make proto-release`
# when a release is cut; between releases the protos change only compatibly).
PROTO_RELEASED := protos/released/brook-v1.binpb

lint: $(GEN_STAMP) $(BUF)
	cd protos && ../$(BUF) lint
	cd protos && ../$(BUF) breaking --against released/brook-v1.binpb
	$(VENV)/bin/ruff check $(RUFF_PATHS)
	$(MAKE) --no-print-directory typecheck

# mypy sees Brook as one namespace through a link tree (.typecheck/brook -> the folders).
typecheck: $(GEN_STAMP)
	$(PY) scripts/typecheck_tree.py
	MYPYPATH=.typecheck $(VENV)/bin/mypy -p brook

proto-release: $(BUF)
	mkdir -p protos/released
	cd protos && ../$(BUF) build --exclude-path released -o released/brook-v1.binpb

fmt: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix $(RUFF_PATHS)
	$(VENV)/bin/ruff format $(RUFF_PATHS)

# One worker: every test starts real processes whose leases and loop-lag bounds assume
# the two cores are theirs (two workers starved leases: measured). The tests that measure
# event-loop lag or rates run last, after the processes of the others are gone.
test: setup $(PROMTOOL) chromium lint
	$(PY) -m pytest -q -p no:cacheprovider -m "not timing"
	$(PY) -m pytest -q -p no:cacheprovider -m timing

test-fast: setup $(PROMTOOL)
	$(PY) -m pytest -q -p no:cacheprovider -m "not integration"

run: setup
	$(VENV)/bin/brook dev --nodes $(NODES) --data-dir $(DATA)

bench: bench-storage bench-cluster

bench-storage: setup
	$(PY) bench/storage_bench.py

bench-cluster: setup
	$(PY) bench/cluster_bench.py

# The balancer's planning time on clusters up to 30,000 partitions (pure CPU, seconds).
bench-planner: setup
	$(PY) bench/planner_bench.py

# A 4th node's time to its share, unthrottled and throttled (SIZES=8,32 THROTTLE_MB=2).
bench-scale: setup
	$(PY) bench/scale_bench.py $(if $(SIZES),--sizes $(SIZES)) $(if $(THROTTLE_MB),--throttle-mb $(THROTTLE_MB))

# Produce/consume through a plaintext and a TLS + mTLS cluster, same run (SCALE=0.2 quick).
bench-tls: setup
	$(PY) bench/tls_bench.py $(if $(SCALE),--scale $(SCALE)) $(if $(ROUNDS),--rounds $(ROUNDS))

# The Kafka comparison fetches Kafka's jars from Maven Central (about 55 MB, once).
KAFKA_JARS := bench/kafka/lib/.fetched

$(KAFKA_JARS): bench/kafka/pom.xml
	rm -rf bench/kafka/lib
	mvn -q -f bench/kafka/pom.xml dependency:copy-dependencies
	touch $@

bench-kafka: setup $(KAFKA_JARS)
	$(PY) bench/kafka/run_kafka_bench.py --with-brook $(if $(SCALE),--scale $(SCALE))

# `make chaos DURATION=600`, or `make chaos FAULTS=100` (N faults, however long they take);
# optional SEED=N (replay), KINDS=a,b (only these fault kinds), REPORT=file.json.
chaos: setup
	$(PY) -m pytest -q -p no:cacheprovider tests/chaos \
	  $(if $(FAULTS),--chaos-faults $(FAULTS),--chaos-duration $(DURATION)) \
	  $(if $(SEED),--chaos-seed $(SEED)) $(if $(KINDS),--chaos-kinds $(KINDS)) \
	  $(if $(REPORT),--chaos-report $(REPORT))

clean:
	rm -rf $(VENV) .tools .typecheck brook/v1 brook/internal build *.egg-info .mypy_cache .ruff_cache .pytest_cache
