#!/usr/bin/env bash
# Install cybloid and everything it needs (editable install, all features, test tools).
#   bash install.sh            system packages for the real-window test (Debian/Ubuntu, as root) + pip
#   SKIP_SYSTEM=1 bash install.sh   pip only
set -euo pipefail
cd "$(dirname "$0")"

PY=${PYTHON:-python3}

if [ "${SKIP_SYSTEM:-0}" != "1" ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else SUDO="skip"; fi
  fi
  if [ "$SUDO" != "skip" ]; then
    echo "== system packages (Xvfb and the X libraries Qt's xcb platform needs)"
    $SUDO apt-get update -qq || echo "apt-get update failed; continuing"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxcb-image0 libxcb-render-util0 \
      libxcb-randr0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libxkbcommon-x11-0 libxkbcommon0 \
      libegl1 libgl1 libglib2.0-0 libfontconfig1 libdbus-1-3 x11-utils >/dev/null \
      || echo "warning: some system packages could not be installed; the real-window test will be skipped"
  else
    echo "== not root and no sudo: skipping system packages (the real-window test will be skipped)"
  fi
fi

echo "== python packages"
"$PY" -m pip install --upgrade pip >/dev/null 2>&1 || true
"$PY" -m pip install -e ".[all]"
echo "== done: try 'cybloid run harmonic-trap'"
