#!/usr/bin/env bash
# Every test: the engine and the WebUI layer in .venv, then the panel under AUTOMATIC1111's
# gradio (3.41.2) and Forge's (4.40.0), the latter also in a real browser (Debian's chromium).
# Run ./dev-setup.sh first; the two gradio environments are created here when missing.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
.venv/bin/python -m ruff check .
.venv/bin/python -m pytest -q "$@"
for v in 3 4; do
  env=".venv-gradio$v"
  if [ ! -x "$env/bin/python" ]; then
    "$PY" -m venv "$env"
    "$env/bin/python" -m pip install -q --upgrade pip
    "$env/bin/python" -m pip install -q -r "requirements-gradio$v.txt"
  fi
done
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium could not be installed: the browser test will be skipped"
fi
.venv-gradio3/bin/python -m pytest -q -p no:cacheprovider tests/test_webui_panel.py
.venv-gradio4/bin/python -m pytest -q -p no:cacheprovider tests/test_webui_panel.py tests/test_webui_browser.py
