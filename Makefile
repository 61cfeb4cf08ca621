# Two commands set up everything on a fresh machine:
#   make demo   - creates .venv, installs govrpc, runs `govrpc demo`
#   make test   - also installs the test tools, ZooKeeper and Chromium (Debian packages), runs the suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test zookeeper chromium bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

zookeeper:
	@test -f /usr/share/java/zookeeper.jar || { \
	  echo "installing Debian's zookeeper package"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q zookeeper; }

chromium:
	@test -x /usr/bin/chromium || { \
	  echo "installing Debian's chromium package (the console's browser tests)"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium; }

demo: $(STAMP)
	$(BIN)/govrpc demo

test: $(STAMP) zookeeper chromium
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) build *.egg-info
