"""The installer and systemd unit shipped inside a bundle (kept here so an installed kit can still make bundles)."""

from __future__ import annotations

SERVICE_NAME = "ckd-tracker.service"
# The service's only writable places, made by systemd for the service user (StateDirectory=, RuntimeDirectory=).
# Engines are built into STATE_DIR/engines, which PREFIX/model/engines links to (only when install.sh installs the
# service: without it there is no state folder); runs write STATE_DIR/run.
STATE_DIR = "/var/lib/ckd"
RUNTIME_DIR = "/run/ckd"

# @PREFIX@, @USER@ and @GROUPS@ are filled in by install.sh (which refuses any but plain values);
# @BUILD_ARGS@ and @RUN_ARGS@ by the bundle, every word escaped for systemd (edge.deploy.escape).
SERVICE_UNIT = f"""\
[Unit]
Description=CKD RGB-thermal tracker (TensorRT)
After=network-online.target nvargus-daemon.service
Wants=network-online.target
# A service that keeps failing stops after 5 tries in 10 minutes instead of restarting forever.
StartLimitIntervalSec=600
StartLimitBurst=5

[Service]
Type=simple
User=@USER@
SupplementaryGroups=@GROUPS@
# Code, venv and model in @PREFIX@ belong to root; the service writes only below these two folders.
StateDirectory=ckd ckd/engines ckd/run
RuntimeDirectory=ckd
WorkingDirectory={STATE_DIR}
Environment=HOME={STATE_DIR} XDG_RUNTIME_DIR={RUNTIME_DIR}
# First start builds the engines for this device (minutes); later starts find them in the cache.
ExecStartPre=@PREFIX@/venv/bin/ckd build --onnx @PREFIX@/model @BUILD_ARGS@
ExecStart=@PREFIX@/venv/bin/ckd run @RUN_ARGS@
# `ckd run` finishes its outputs on SIGTERM and exits 143 (128 + SIGTERM): a clean stop, not a failure.
SuccessExitStatus=143
Restart=on-failure
RestartSec=5
TimeoutStartSec=3600
# Hardening: no privilege gain, a read-only system, no homes, a private /tmp (CSI cameras still reach
# nvargus-daemon's socket), devices only through the video and render groups.
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
BindPaths=-/tmp/argus_socket
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
RestrictNamespaces=yes
LockPersonality=yes
UMask=0027

[Install]
WantedBy=multi-user.target
"""

INSTALL_SH = r"""#!/usr/bin/env bash
# Install a CKD edge kit bundle on a Jetson. Root steps read and run only root-owned files: the bundle is
# copied into a root-only folder and verified there by the kit's verifier (verify.pyz, system python3);
# code, venv and model in the prefix belong to root; the service runs as a dedicated unprivileged system
# user that can write only its systemd StateDirectory (/var/lib/ckd) and RuntimeDirectory (/run/ckd).
set -euo pipefail
umask 022

usage() {
    echo "usage: install.sh [--verify-only | --dry-run | --print-unit] [--prefix DIR] [--user NAME] [--no-service]"
    echo "                  [--allowed-signers FILE]"
    echo "  --verify-only            check every file against SHA256SUMS (and the signature, see below) and stop"
    echo "  --dry-run                make every check, say what would be done, change nothing"
    echo "  --print-unit             print the systemd unit this install would write and stop"
    echo "  --prefix DIR             install location, owned by root (default /opt/ckd)"
    echo "  --user NAME              system account the service runs as, created if missing (default ckd)"
    echo "  --no-service             do not install/enable the systemd unit"
    echo "  --allowed-signers FILE   require a signature by a key in this ssh allowed_signers file"
    echo "                           (default: /etc/ckd/allowed_signers when it exists)"
}

die() { echo "install.sh: $*" >&2; exit 1; }

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE=/var/lib/ckd
PREFIX=/opt/ckd
SERVICE_USER=ckd
MODE=install
SERVICE=1
SIGNERS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --verify-only) MODE=verify ;;
        --dry-run) MODE=dry-run ;;
        --print-unit) MODE=print-unit ;;
        --prefix|--user|--allowed-signers)
            [ $# -ge 2 ] || die "$1 needs a value"
            case "$1" in
                --prefix) PREFIX="$2" ;;
                --user) SERVICE_USER="$2" ;;
                *) SIGNERS=(--allowed-signers "$2") ;;
            esac
            shift ;;
        --no-service) SERVICE=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

# Values that reach the unit file and root's commands: plain, or refused.
[[ "$PREFIX" =~ ^(/[A-Za-z0-9_.+-]+)+$ ]] \
    || die "--prefix '$PREFIX': an absolute path of letters, digits and . _ + - (no spaces, quotes, % or trailing /)"
case "$PREFIX/" in
    */./*|*/../*) die "--prefix $PREFIX: no . or .. in it" ;;
    /home/*|/root/*|/run/*|/tmp/*|/var/tmp/*|/dev/*|/proc/*|/sys/*|"$STATE"/*)
        die "--prefix $PREFIX: the service cannot read there (homes, temporary and runtime folders, its own state)" ;;
esac
[[ "$SERVICE_USER" =~ ^[a-z_][a-z0-9_-]{0,30}$ ]] \
    || die "--user '$SERVICE_USER': a system account name (lowercase letters, digits, _ and -)"

unit() {  # the systemd unit of bundle folder $1 with this install's values
    local groups="" g
    for g in video render; do
        if getent group "$g" >/dev/null; then groups="$groups $g"; fi
    done
    sed -e "s|@PREFIX@|$PREFIX|g" -e "s|@USER@|$SERVICE_USER|g" \
        -e "s|^SupplementaryGroups=@GROUPS@\$|${groups:+SupplementaryGroups=${groups# }}|" "$1/ckd-tracker.service"
}

verify() {  # the kit's verifier on bundle folder $1, run by the system python3 (isolated, writes no bytecode)
    command -v python3 >/dev/null || die "python3 not found; it is needed to verify the bundle"
    python3 -I -B "$1/verify.pyz" ${SIGNERS[@]+"${SIGNERS[@]}"} "$1" \
        || die "verification FAILED (above); refusing to install this bundle"
}

check_parents() {  # every existing folder from $1 up to /: a real folder, root's, writable by root only
    local p="$1" uid mode
    while :; do
        [ ! -L "$p" ] || die "$p: a symlink; refusing to install through it"
        if [ -e "$p" ]; then
            [ -d "$p" ] || die "$p: not a folder"
            read -r uid mode < <(stat -c '%u %a' -- "$p")
            [ "$uid" = 0 ] || die "$p: owned by uid $uid, not root; its owner could change what root installs"
            (( (8#$mode & 8#022) == 0 )) || die "$p: writable by group or others (mode $mode); refusing"
        fi
        [ "$p" != / ] || break
        p="$(dirname -- "$p")"
    done
}

check_user() {  # an existing service account must be an unprivileged one
    USER_EXISTS=0
    if id -u "$SERVICE_USER" >/dev/null 2>&1; then
        USER_EXISTS=1
        [ "$(id -u "$SERVICE_USER")" != 0 ] || die "--user $SERVICE_USER: uid 0; the service runs unprivileged"
        case " $(id -nG "$SERVICE_USER") " in
            *" sudo "*|*" admin "*|*" wheel "*|*" adm "*)
                die "--user $SERVICE_USER: an administrator account; give a dedicated one (default ckd)" ;;
        esac
    fi
}

case "$MODE" in
    print-unit) unit "$HERE"; exit 0 ;;
    verify) verify "$HERE"; exit 0 ;;
esac

# 1. Checks: where the files go, who runs them, what is installed.
check_parents "$(dirname -- "$PREFIX")"
check_user
if [ "$MODE" = dry-run ]; then
    verify "$HERE"
    [ "$USER_EXISTS" = 1 ] || echo "would create the system user $SERVICE_USER (no login, home $STATE)"
    echo "would install the model and a venv with the kit into $PREFIX (owned by root)"
    [ "$SERVICE" = 0 ] || echo "would install and start ckd-tracker.service (user $SERVICE_USER, state in $STATE)"
    exit 0
fi
[ "$(id -u)" = 0 ] || die "installing needs root: run it with sudo (--verify-only, --dry-run and --print-unit do not)"
STAGE="$(mktemp -d)"
trap 'rm -rf -- "$STAGE"' EXIT
cp -R -P -- "$HERE" "$STAGE/bundle"  # what is installed is this root-only copy, verified here
B="$STAGE/bundle"
verify "$B"

# 2. The system TensorRT (JetPack) must be importable by the system python.
if ! python3 -c "import tensorrt" 2>/dev/null; then
    die "python3 cannot import tensorrt; install JetPack's python3-libnvinfer first"
fi

# 3. The service account: a system user without login or home of its own (systemd makes its state folder).
[ "$SERVICE" = 0 ] || systemctl stop ckd-tracker.service 2>/dev/null || true
if [ "$USER_EXISTS" = 0 ]; then
    useradd --system --user-group --home-dir "$STATE" --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER"
fi

# 4. The prefix belongs to root; whatever in it is not root's alone (an older install gave it away) is replaced.
mkdir -p -- "$PREFIX"
chown root:root -- "$PREFIX"
chmod 0755 -- "$PREFIX"
for entry in venv model model-int8 bundle.json ckd_config.json; do
    if [ -e "$PREFIX/$entry" ] || [ -L "$PREFIX/$entry" ]; then
        if [ -n "$(find "$PREFIX/$entry" \( ! -user 0 -o ! -type l -perm /022 \) -print -quit)" ]; then
            echo "install.sh: $PREFIX/$entry holds files others can change (older install); replacing it" >&2
            rm -rf -- "${PREFIX:?}/$entry"
        fi
    fi
done
other="$(find "$PREFIX" -mindepth 1 \( ! -user 0 -o ! -type l -perm /022 \) -print -quit)"
[ -z "$other" ] || die "$other: in $PREFIX but others can change it; remove it and install again"

# 5. Files, a venv over the system site packages (TensorRT, OpenCV), the kit's wheel and the edge runtime deps.
rm -rf -- "${PREFIX:?}/model" "${PREFIX:?}/model-int8"
cp -R -- "$B/model" "$PREFIX/model"
if [ "$SERVICE" = 1 ]; then  # the service builds the engines into its state folder (systemd makes it)
    ln -s "$STATE/engines" "$PREFIX/model/engines"
fi
if [ -d "$B/model-int8" ]; then
    cp -R -- "$B/model-int8" "$PREFIX/model-int8"
fi
cp -- "$B/bundle.json" "$B/ckd_config.json" "$PREFIX/"
if [ ! -d "$PREFIX/venv" ]; then
    python3 -m venv --system-site-packages "$PREFIX/venv"
fi
# The kit and its device packages with --no-deps: JetPack's numpy, cv2, gi and tensorrt are never replaced.
"$PREFIX/venv/bin/pip" install --upgrade --no-deps "$B"/wheels/*.whl
"$PREFIX/venv/bin/pip" install --no-deps -r "$B/requirements-edge.txt"

# 6. The service: its ExecStartPre builds the engines on first start.
if [ "$SERVICE" = 1 ]; then
    unit "$B" > "$STAGE/ckd-tracker.service"
    if command -v systemd-analyze >/dev/null; then
        systemd-analyze verify "$STAGE/ckd-tracker.service" || die "systemd rejects the unit (above)"
    fi
    install -m 0644 -o root -g root "$STAGE/ckd-tracker.service" /etc/systemd/system/ckd-tracker.service
    systemctl daemon-reload
    systemctl enable --now ckd-tracker.service
    echo "install.sh: service started as $SERVICE_USER; engines build on first start: journalctl -fu ckd-tracker"
else
    # ckd run and ckd bench --model-dir read the engines in MODEL/engines, and $PREFIX/model is root's
    int8=""
    [ ! -d "$PREFIX/model-int8" ] || int8=" --int8 $PREFIX/model-int8"
    echo "install.sh: installed in $PREFIX (no service). ckd run reads engines from the model folder's engines/:"
    echo "  build them in a copy of the model you own: cp -R $PREFIX/model DIR &&" \
        "$PREFIX/venv/bin/ckd build --onnx DIR$int8"
    echo "  then: $PREFIX/venv/bin/ckd run --backend tensorrt --model-dir DIR ..."
fi
"""

# What the device lacks, installed with --no-deps: exact versions with wheels for JetPack's Python (3.8 on
# JetPack 5 / CUDA 11.4, 3.10 on JetPack 6 / CUDA 12.x). numpy, OpenCV, PyGObject and TensorRT come from
# JetPack (the venv sees the system site packages) and are never replaced.
REQUIREMENTS_EDGE = """\
tqdm==4.70.1
cuda-python==11.8.2; python_version < "3.10"
cuda-python==12.6.0; python_version >= "3.10"
"""
