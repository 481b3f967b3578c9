"""The installer and systemd unit shipped inside a bundle (kept here so an installed kit can still make bundles)."""

from __future__ import annotations

SERVICE_NAME = "ckd-tracker.service"

# @PREFIX@ and @USER@ are filled in by install.sh; @BUILD_ARGS@ and @RUN_ARGS@ by the bundle.
SERVICE_UNIT = """\
[Unit]
Description=CKD RGB-thermal tracker (TensorRT)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=@USER@
WorkingDirectory=@PREFIX@
# First start builds the engines for this device (minutes); later starts find them in the cache.
ExecStartPre=@PREFIX@/venv/bin/ckd build --onnx @PREFIX@/model @BUILD_ARGS@
ExecStart=@PREFIX@/venv/bin/ckd run @RUN_ARGS@
Restart=on-failure
RestartSec=5
TimeoutStartSec=3600

[Install]
WantedBy=multi-user.target
"""

INSTALL_SH = r"""#!/usr/bin/env bash
# Install a CKD edge kit bundle on a Jetson: verify every file, make a venv over the system TensorRT,
# install the kit's wheel, and set up the tracker service (engines are built on its first start).
set -euo pipefail

usage() {
    echo "usage: install.sh [--verify-only] [--prefix DIR] [--user USER] [--no-service]"
    echo "  --verify-only  check every file against SHA256SUMS and stop"
    echo "  --prefix DIR   install location (default /opt/ckd)"
    echo "  --user USER    account the service runs as (default: the user who ran sudo, else the current user)"
    echo "  --no-service   do not install/enable the systemd unit"
}

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PREFIX=/opt/ckd
RUN_USER="${SUDO_USER:-$(id -un)}"
VERIFY_ONLY=0
SERVICE=1
while [ $# -gt 0 ]; do
    case "$1" in
        --verify-only) VERIFY_ONLY=1 ;;
        --prefix) PREFIX="$2"; shift ;;
        --user) RUN_USER="$2"; shift ;;
        --no-service) SERVICE=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

# 1. Every file must match SHA256SUMS and every file must be listed in it: refuse otherwise.
cd "$HERE"
if ! sha256sum --check --strict --quiet SHA256SUMS >&2; then
    echo "install.sh: checksum verification FAILED (files above); refusing to install this bundle" >&2
    exit 1
fi
unlisted="$(find . -type f ! -name SHA256SUMS -printf '%P\n' | sort \
    | comm -23 - <(sed 's/^[0-9a-f]*  //' SHA256SUMS | sort))"
if [ -n "$unlisted" ]; then
    echo "install.sh: files not in SHA256SUMS: $(echo $unlisted); refusing to install this bundle" >&2
    exit 1
fi
echo "install.sh: all $(wc -l < SHA256SUMS) files verified"
if [ "$VERIFY_ONLY" = 1 ]; then
    exit 0
fi

# 2. The system TensorRT (JetPack) must be importable by the system python.
if ! python3 -c "import tensorrt" 2>/dev/null; then
    echo "install.sh: python3 cannot import tensorrt; install JetPack's python3-libnvinfer first" >&2
    exit 1
fi
L4T_MAJOR="$(sed -n 's/^# R\([0-9]*\).*/\1/p' /etc/nv_tegra_release 2>/dev/null || true)"
case "$L4T_MAJOR" in
    36) CUDA_PY="cuda-python>=12.2,<12.7" ;;
    35) CUDA_PY="cuda-python>=11.4,<11.9" ;;
    *) CUDA_PY="cuda-python" ;;
esac

# 3. Files, a venv over the system site packages (TensorRT, OpenCV), the kit's wheel and the edge runtime deps.
mkdir -p "$PREFIX"
rm -rf "$PREFIX/model" "$PREFIX/model-int8"
cp -r model "$PREFIX/model"
if [ -d model-int8 ]; then
    cp -r model-int8 "$PREFIX/model-int8"
fi
cp bundle.json ckd_config.json "$PREFIX/"
if [ ! -d "$PREFIX/venv" ]; then
    python3 -m venv --system-site-packages "$PREFIX/venv"
fi
"$PREFIX/venv/bin/pip" install --upgrade --no-deps wheels/*.whl
"$PREFIX/venv/bin/pip" install -r requirements-edge.txt "$CUDA_PY"
chown -R "$RUN_USER" "$PREFIX"

# 4. The service: its ExecStartPre builds the engines on first start.
if [ "$SERVICE" = 1 ]; then
    sed -e "s|@PREFIX@|$PREFIX|g" -e "s|@USER@|$RUN_USER|g" ckd-tracker.service \
        > /etc/systemd/system/ckd-tracker.service
    systemctl daemon-reload
    systemctl enable --now ckd-tracker.service
    echo "install.sh: service started; engines build on first start: journalctl -fu ckd-tracker"
else
    echo "install.sh: installed in $PREFIX; build engines: $PREFIX/venv/bin/ckd build --onnx $PREFIX/model"
fi
"""

# Runtime dependencies on the device. TensorRT and OpenCV come from JetPack (system site packages);
# torch is not needed to run engines, so the wheel is installed with --no-deps.
REQUIREMENTS_EDGE = """\
numpy>=1.26
tqdm>=4.66
pyyaml>=6.0
"""
