# Environment for running ssl_obstacle from this checkout's venv and colcon install space.
# Sourced by the Makefile's recipes and by ./ssl-obstacle; safe to source by hand too:
#   source scripts/env.sh                          # ROS 2 Jazzy: .venv, install/
#   SSL_ROS_DISTRO=kilted source scripts/env.sh    # ROS 2 Kilted: .venv-kilted, install-kilted/
# SSL_ROS_DISTRO (jazzy by default; `make ... ROS_DISTRO=kilted` exports it) picks the
# distribution. A ROS_DISTRO left in the shell by a sourced ROS install is not used to choose
# (it names that install, not one of this checkout's venvs); this script sets ROS_DISTRO to
# the distribution whose wheels it puts first, as a ROS install's setup.bash would.
# Exports SSL_ROS_DISTRO and SSL_INSTALL (the install space in use, for tools and tests).
# shellcheck shell=bash
SSL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SSL_ROS_DISTRO="${SSL_ROS_DISTRO:-jazzy}"
if [ "$SSL_ROS_DISTRO" = "jazzy" ]; then SSL_SUFFIX=""; else SSL_SUFFIX="-$SSL_ROS_DISTRO"; fi
SSL_VENV="${SSL_VENV:-$SSL_ROOT/.venv$SSL_SUFFIX}"
SSL_INSTALL="$SSL_ROOT/install$SSL_SUFFIX"
SSL_PYVER="$("$SSL_VENV/bin/python" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")' 2>/dev/null || echo python3.11)"

# Drop this checkout's venvs and install spaces from a search path (a shell that sourced this
# file for the other distribution, or a process started from one of its Pythons): the two
# distributions' libraries must never mix. Prints the rest, in order.
_ssl_strip_paths() {
  local entry kept="" parts
  IFS=: read -r -a parts <<< "$1"
  for entry in "${parts[@]}"; do
    case "$entry" in
      ""|"$SSL_ROOT"/.venv|"$SSL_ROOT"/.venv/*|"$SSL_ROOT"/.venv-*|"$SSL_ROOT"/install/*|"$SSL_ROOT"/install-*) ;;
      *) kept="${kept:+$kept:}$entry" ;;
    esac
  done
  printf '%s' "$kept"
}
PATH="$(_ssl_strip_paths "$PATH")"
PYTHONPATH="$(_ssl_strip_paths "${PYTHONPATH:-}")"
LD_LIBRARY_PATH="$(_ssl_strip_paths "${LD_LIBRARY_PATH:-}")"
# The wheels' .pth hook re-executes Python once with its venv's lib/ on LD_LIBRARY_PATH and
# marks that in the environment; a mark inherited from the other venv's Python must not
# stop this venv's hook from running.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE

export SSL_ROS_DISTRO SSL_INSTALL
export ROS_DISTRO="$SSL_ROS_DISTRO"
export ROS_VERSION=2
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

# Which variable keeps DDS discovery on this machine depends on the distribution (rcl reads
# it at rclpy.init): Iron and newer (Jazzy, Kilted: rclpy 4 and up) read
# ROS_AUTOMATIC_DISCOVERY_RANGE; Jazzy still honours ROS_LOCALHOST_ONLY=1 but warns that it is
# deprecated (and then ignores the range), Kilted ignores it altogether; Humble and older
# (rclpy 3 and below) know only ROS_LOCALHOST_ONLY. We set exactly the one this venv's rclpy
# reads (its version from the egg-info the wheels install; the distribution's name if none)
# and unset the other, so no warning appears whatever the user's shell had exported.
SSL_DISCOVERY_VARIABLE=ROS_AUTOMATIC_DISCOVERY_RANGE
for _ssl_egg in "$SSL_VENV"/lib/python3*/site-packages/rclpy-*.egg-info; do
  if [ -e "$_ssl_egg" ]; then
    _ssl_egg="${_ssl_egg##*/rclpy-}"
    if [ "${_ssl_egg%%.*}" -lt 4 ] 2>/dev/null; then SSL_DISCOVERY_VARIABLE=ROS_LOCALHOST_ONLY; fi
  else
    case "$SSL_ROS_DISTRO" in
      ardent|bouncy|crystal|dashing|eloquent|foxy|galactic|humble) SSL_DISCOVERY_VARIABLE=ROS_LOCALHOST_ONLY ;;
    esac
  fi
done
unset _ssl_egg
# DDS stays on loopback (never discover or announce on the machine's networks) unless the
# user opts in with SSL_OBSTACLE_NETWORK=1. Static peers and a Fast DDS discovery server
# from the user's shell would be contacted beyond loopback: they are dropped too.
if [ "${SSL_OBSTACLE_NETWORK:-0}" = "1" ]; then
  # Opt-in for two machines (README, "The learner on another machine"): discover peers on
  # the subnet in the domain the user chose; tests and CI never set this.
  if [ -z "${ROS_DOMAIN_ID:-}" ]; then
    echo "SSL_OBSTACLE_NETWORK=1 needs ROS_DOMAIN_ID (the same on every machine)" >&2
    return 2 2>/dev/null || exit 2
  fi
  unset ROS_LOCALHOST_ONLY
  if [ "$SSL_DISCOVERY_VARIABLE" = ROS_AUTOMATIC_DISCOVERY_RANGE ]; then
    export ROS_AUTOMATIC_DISCOVERY_RANGE="${SSL_OBSTACLE_DISCOVERY_RANGE:-SUBNET}"
  else
    unset ROS_AUTOMATIC_DISCOVERY_RANGE
  fi
elif [ "$SSL_DISCOVERY_VARIABLE" = ROS_AUTOMATIC_DISCOVERY_RANGE ]; then
  export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
  unset ROS_LOCALHOST_ONLY ROS_STATIC_PEERS ROS_DISCOVERY_SERVER ROS_SUPER_CLIENT
else
  export ROS_LOCALHOST_ONLY=1
  unset ROS_AUTOMATIC_DISCOVERY_RANGE ROS_STATIC_PEERS ROS_DISCOVERY_SERVER ROS_SUPER_CLIENT
fi
# A domain of our own unless the caller chose one, so parallel runs do not see each other.
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( ($$ % 200) + 20 ))}"
# Developers: SSL_OBSTACLE_DEV=1 imports the Python package from the source tree instead of
# the colcon install space, so edits take effect without `make setup`.
if [ "${SSL_OBSTACLE_DEV:-0}" = "1" ]; then
  export PYTHONPATH="$SSL_ROOT/ssl_obstacle:$PYTHONPATH"
fi
