#!/usr/bin/env bash
# Creates .venv with everything the command line and the tests need (CPU build of torch).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned, so that nothing below pulls a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
.venv/bin/python -m pip install -q -r requirements-test.txt
# The project itself, editable: the video-loopback command then works from any folder.
.venv/bin/python -m pip install -q -e .
