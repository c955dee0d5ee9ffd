# Environment for running ssl_obstacle from this checkout's .venv and colcon install space.
# Sourced by the Makefile's recipes and by ./ssl-obstacle; safe to source by hand too:
#   source scripts/env.sh
# shellcheck shell=bash
SSL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SSL_VENV="${SSL_VENV:-$SSL_ROOT/.venv}"
SSL_INSTALL="$SSL_ROOT/install"
SSL_PYVER="$("$SSL_VENV/bin/python" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")' 2>/dev/null || echo python3.11)"

export VIRTUAL_ENV="$SSL_VENV"
export PATH="$SSL_VENV/bin:$PATH"
if [ -d "$SSL_INSTALL/ssl_obstacle_msgs" ]; then
  export AMENT_PREFIX_PATH="$SSL_INSTALL/ssl_obstacle:$SSL_INSTALL/ssl_obstacle_msgs:$SSL_INSTALL/tf2_msgs:$SSL_VENV"
  export CMAKE_PREFIX_PATH="$SSL_INSTALL/ssl_obstacle_msgs:$SSL_INSTALL/tf2_msgs:$SSL_VENV"
else  # nothing built yet: colcon builds against the wheels alone
  export AMENT_PREFIX_PATH="$SSL_VENV"
  export CMAKE_PREFIX_PATH="$SSL_VENV"
fi
export PYTHONPATH="$SSL_INSTALL/ssl_obstacle/lib/$SSL_PYVER/site-packages:$SSL_INSTALL/ssl_obstacle_msgs/lib/$SSL_PYVER/site-packages:$SSL_INSTALL/tf2_msgs/lib/$SSL_PYVER/site-packages${PYTHONPATH:+:$PYTHONPATH}"
export LD_LIBRARY_PATH="$SSL_INSTALL/ssl_obstacle_msgs/lib:$SSL_INSTALL/tf2_msgs/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
# DDS stays on loopback (never discover or announce on the machine's networks) unless the
# user opts in with SSL_OBSTACLE_NETWORK=1.
if [ "${SSL_OBSTACLE_NETWORK:-0}" = "1" ]; then
  # Opt-in for two machines (README, "The learner on another machine"): discover peers on
  # the subnet in the domain the user chose; tests and CI never set this.
  if [ -z "${ROS_DOMAIN_ID:-}" ]; then
    echo "SSL_OBSTACLE_NETWORK=1 needs ROS_DOMAIN_ID (the same on every machine)" >&2
    return 2 2>/dev/null || exit 2
  fi
  export ROS_AUTOMATIC_DISCOVERY_RANGE="${SSL_OBSTACLE_DISCOVERY_RANGE:-SUBNET}"
  unset ROS_LOCALHOST_ONLY
else
  export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
  export ROS_LOCALHOST_ONLY=1
fi
# A domain of our own unless the caller chose one, so parallel runs do not see each other.
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( ($$ % 200) + 20 ))}"
# Developers: SSL_OBSTACLE_DEV=1 imports the Python package from the source tree instead of
# the colcon install space, so edits take effect without `make setup`.
if [ "${SSL_OBSTACLE_DEV:-0}" = "1" ]; then
  export PYTHONPATH="$SSL_ROOT/ssl_obstacle:$PYTHONPATH"
fi
