# bgpd: the two commands a newcomer needs are `make demo` and `make test`.
# Everything here runs as root on a fresh Debian 12 machine and installs what it needs.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIRD2  ?= /opt/bird2
# gcc and python3-dev: the compiled build (setup.py, mypyc).
DEBIAN_PACKAGES := bird frr gobgpd etcd-server etcd-client nftables iproute2 iputils-ping procps psmisc \
                   libssh-gcrypt-4 python3-venv gcc python3-dev
# kubectl checks the test Kubernetes API server; Debian ships it as kubernetes-client, installed
# only when no kubectl binary is on PATH already.
DEBIAN_PACKAGES += $(if $(shell command -v kubectl),,kubernetes-client)

.PHONY: all deps deps-debian deps-python test lint unit demo bench soak clean

all: test

## deps: Debian packages (real peers, etcd, nftables), BIRD 2 beside BIRD 1.6, and the Python venv
deps: deps-debian deps-python

deps-debian:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@# bird2 conflicts with bird (1.6, what Calico ships): unpack it beside, never install it.
	@if [ ! -x $(BIRD2)/usr/sbin/bird ]; then \
	  tmp=$$(mktemp -d) && (cd $$tmp && apt-get download -qq bird2) && \
	  mkdir -p $(BIRD2) && dpkg -x $$tmp/bird2_*.deb $(BIRD2) && rm -rf $$tmp; \
	fi

# The build compiles the modules pyproject.toml lists under [tool.bgpd] with mypyc (setup.py);
# BGPD_PURE_PYTHON=1 builds pure Python, and the tests check that they run on the build asked
# for. The stamp names the kind, so switching rebuilds; so does editing a compiled module (its
# extension module would shadow the edited source). Nothing changed, nothing is rebuilt.
export BGPD_PURE_PYTHON
BUILD_KIND := $(if $(filter-out 0,$(BGPD_PURE_PYTHON)),pure,compiled)
COMPILED   := $(if $(filter compiled,$(BUILD_KIND)),$(shell $(PYTHON) -B -c 'import setup; print(*setup.compiled_sources())'))

deps-python: $(VENV)/.installed-$(BUILD_KIND)

$(VENV)/.installed-$(BUILD_KIND): pyproject.toml setup.py $(COMPILED)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed*
	touch $@

LINT_PATHS := $(wildcard bgpd peers encap tests bench containerlab)

## lint: ruff and mypy, clean
lint: deps-python
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy

## test: everything, including real peers in network namespaces (needs root)
test: deps lint
	$(PY) -m pytest -q

## unit: the pure tests only (no root, no network)
unit: deps-python
	$(PY) -m pytest -q -m "not netns"

## demo: the 3-node lab on the embedded datastore (DEMO_FLAGS=--keep leaves it up)
demo: deps
	$(PY) containerlab/netlab.py demo containerlab/mesh3.clab.yml $(DEMO_FLAGS)

## bench: every benchmark beside its reference, in one run
bench: deps
	$(PY) bench/codec.py
	$(PY) bench/ingest.py
	$(PY) bench/install.py --sizes 100000,1000000
	$(PY) bench/e2e_ingest.py --sizes 100000,1000000 --peers 1,4
	$(PY) bench/e2e_ingest.py --sizes 100000,1000000 --family ipv6
	$(PY) bench/convergence.py --trials 100
	$(PY) bench/service_latency.py --changes 60
	$(PY) bench/rr_scale.py --clients 1000 --per-client 20,100 --per-client-clients 1000 --mesh-nodes 500 --connect-window 8 --accept-only
	$(PY) bench/restart.py
	$(PY) bench/explain.py
	$(PY) bench/bfd_failover.py --deaths 20
	$(PY) bench/bfd_load.py --intervals 100,50,20 --seconds 60

## soak: 30 minutes of mixed churn, RSS, file descriptors and tasks sampled each minute (not in test)
soak: deps
	$(PY) bench/soak.py $(SOAK_FLAGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build bgpd__mypyc.*.so
	find bgpd peers encap -name '*.so' -delete
