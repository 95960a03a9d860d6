#!/usr/bin/env bash
# Development/CI set-up: .venv with the torch pair that imports beside torchvision on these machines,
# the package with every extra, Debian chromium for browser tests, and the web bundle's npm packages.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# Install the torch pair first, so no extra's torch range can pull a multi-GB build from elsewhere.
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -e ".[train,serve,provenance,scale,corpus,fastjpeg,jxl,dev]"

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "warning: chromium missing and not root: browser tests will be skipped" >&2
  fi
fi

# jpegtran: lossless JPEG crops of the corpus builder (its tests skip without it).
if ! command -v jpegtran >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    { apt-get install -y -qq libjpeg-turbo-progs || { apt-get update -qq && apt-get install -y -qq libjpeg-turbo-progs; }; } >/dev/null
  else
    echo "warning: jpegtran missing and not root: corpus tests will be skipped" >&2
  fi
fi

# libturbojpeg for cropped JPEG decoding (the [fastjpeg] extra); without it decoding falls back to Pillow.
if ! ldconfig -p 2>/dev/null | grep -q libturbojpeg.so.0 && [ "$(id -u)" = "0" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libturbojpeg0 >/dev/null || true
fi

# The page is committed (src/aivsreal/web_static); this rebuild (identical when fresh) also makes the extension
# and web/node_modules for the Node tests. Without Node or the npm registry those tests skip; the rest run.
if [ -f web/package.json ] && command -v npm >/dev/null 2>&1; then
  (cd web && { [ -f package-lock.json ] && npm ci --no-audit --no-fund --loglevel=error || npm install --no-audit --no-fund --loglevel=error; } && npm run --silent build) \
    || echo "warning: the npm build failed: extension and Node tests will skip" >&2
fi
