#!/usr/bin/env bash
# Install what citysight needs on a Debian 12 machine, idempotently and quickly when done.
#   bash infra/local/setup.sh          # the main job: system packages, .venv, the package
#   bash infra/local/setup.sh --test   # plus test tools (RTSP server, Chromium, Playwright)
set -euo pipefail
cd "$(dirname "$0")/../.."
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# -- system packages ------------------------------------------------------------------------
pkgs=(redis-server python3-venv python3-dev fonts-noto-cjk)
if [ "$want_test" = 1 ]; then
  pkgs+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-tools gstreamer1.0-plugins-base
         gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav
         chromium chromium-driver iproute2 redis-sentinel)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing system packages: ${missing[*]}"
  sudo_ apt-get update -qq
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# -- Python environment ---------------------------------------------------------------------
py=${CITYSIGHT_PYTHON:-}
if [ -z "$py" ]; then
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      py=$(command -v "$c"); break
    fi
  done
fi
[ -n "$py" ] || { echo "setup: Python 3.11 is required (apt-get install python3.11)" >&2; exit 1; }
[ -x .venv/bin/python ] || "$py" -m venv .venv

extras=""
[ "$want_test" = 1 ] && extras="[test]"
stamp=".venv/.citysight-installed${extras}"
sum=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
  echo "setup: installing the citysight package${extras} into .venv (first time: a few minutes)"
  .venv/bin/python -m pip install -q --disable-pip-version-check -U pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras}"
  # rapidocr_onnxruntime carries the PP-OCRv4 models but asks for the non-headless OpenCV:
  # its other requirements are in pyproject.toml, so install it without dependencies.
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "rapidocr_onnxruntime==1.4.4"
  echo "$sum" > "$stamp"
fi

# -- model files (operator-supplied; the shared folder when this checkout has one) ----------
if [ -d ../shared/models ] && [ -f model_repo/manifest.yaml ]; then
  .venv/bin/citysight models install --from ../shared/models >/dev/null 2>&1 \
    || echo "setup: some model files could not be installed; detectors use fallback tiers"
fi
