#!/usr/bin/env bash
# Every test: the engine and the WebUI layer in .venv, then the panel under AUTOMATIC1111's
# gradio (3.41.2) and Forge's (4.40.0), the latter also in a real browser (Debian's chromium).
# Run ./dev-setup.sh first; the two gradio environments are created here when missing.
# Every part runs even when an earlier one fails; the summary at the end names each part, and
# the script fails if any did.
set -uo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
declare -a results=()
failed=0

part() {  # part NAME COMMAND...: runs it and records how it ended
  local name=$1
  shift
  echo "=== $name"
  local rc=0
  "$@" || rc=$?
  if [ "$rc" -eq 0 ]; then
    results+=("passed  $name")
  else
    results+=("FAILED  $name (exit $rc)")
    failed=1
  fi
  return "$rc"
}

gradio_env() {  # made anew unless an install of the same requirements finished (.installed holds them)
  local env=".venv-gradio$1" reqs="requirements-gradio$1.txt"
  cmp -s "$reqs" "$env/.installed" && return 0
  "$PY" -m venv --clear "$env" &&
    "$env/bin/python" -m pip install -q --upgrade pip &&
    "$env/bin/python" -m pip install -q -r "$reqs" &&
    cp "$reqs" "$env/.installed"
}

part "ruff" .venv/bin/python -m ruff check .
part "tests (.venv)" .venv/bin/python -m pytest -q "$@"
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium could not be installed: the browser test will be skipped"
fi
if part "gradio 3 environment" gradio_env 3; then
  part "panel under gradio 3.41.2" .venv-gradio3/bin/python -m pytest -q -p no:cacheprovider tests/test_webui_panel.py
fi
if part "gradio 4 environment" gradio_env 4; then
  part "panel and browser under gradio 4.40.0" .venv-gradio4/bin/python -m pytest -q -p no:cacheprovider tests/test_webui_panel.py tests/test_webui_browser.py
fi
echo "=== summary"
printf '%s\n' "${results[@]}"
exit "$failed"
