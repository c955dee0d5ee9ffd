#!/usr/bin/env bash
# Run a command inside the project's environment (see scripts/env.sh).
set -euo pipefail
# shellcheck source=scripts/env.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/env.sh"
exec "$@"
