#!/usr/bin/env bash
# Rebuild the compiled core in place. Serialised with a lock so that several
# developers (or agents) working in one tree never build concurrently.
set -euo pipefail
cd "$(dirname "$0")/.."
exec flock /tmp/miniff-build.lock python setup.py -q build_ext --inplace "$@"
