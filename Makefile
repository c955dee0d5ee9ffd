# One-command setup, tests and tools for ssl_obstacle on a machine without a ROS install.
# Every target installs what it needs first (make setup), and does nothing it need not:
# .venv is rebuilt only when requirements.txt changes, colcon only when sources change.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python
DEPS_STAMP := $(VENV)/.requirements-installed
BUILD_STAMP := install/.build-stamp
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

$(DEPS_STAMP): requirements.txt | $(VENV_PY)
	$(VENV_PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(VENV_PY) scripts/fix_cmake_exports.py
	touch $(VENV)/COLCON_IGNORE
	touch $@

# vendor/ (COLCON_IGNOREd for users' workspaces) is copied out of its ignored folder and
# built only here, where the ROS wheels lack those packages.
$(BUILD_STAMP): $(DEPS_STAMP) $(BUILD_SOURCES)
	rm -rf build/vendor_src && mkdir -p build/vendor_src && cp -r vendor/tf2_msgs build/vendor_src/
	$(WITH_ENV) colcon --log-base log build --build-base build --install-base install \
		--event-handlers console_direct- \
		--paths build/vendor_src/tf2_msgs ssl_obstacle_msgs ssl_obstacle
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

clean:
	rm -rf build install log

distclean: clean
	rm -rf $(VENV)
