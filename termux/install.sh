#!/data/data/com.termux/files/usr/bin/sh
# Install the Estafet relay node on an Android phone, inside Termux.
#
#   sh termux/install.sh [SOURCE]      SOURCE: the checkout (default: this script's ..) or a wheel
#
# Termux must come from F-Droid or GitHub, NOT Google Play (the Play build cannot reach the LAN).
# Install Termux:API and Termux:Boot from the same source.
#
# cryptography comes from `pkg` as python-cryptography (prebuilt Rust part) and is seen through a
# --system-site-packages venv. Building it with pip would need Termux's `rust` package, clang
# and a long compile: this script never pip-installs cryptography (estafet itself is installed
# with --no-deps, and its pure-Python dependencies are listed one by one below). Installing
# python-cryptography compiles its `cffi` dependency: that needs `clang` and internet access,
# so run this script where there is signal, before election day.
set -eu

PREFIX="${PREFIX:-/data/data/com.termux/files/usr}"
HERE="$(cd "$(dirname "$0")" && pwd)"
SOURCE="${1:-$HERE/..}"
ESTAFET_VENV="${ESTAFET_VENV:-$HOME/.estafet/venv}"
ESTAFET_HOME="${ESTAFET_HOME:-$HOME/.estafet/home}"

echo "== packages"
pkg update -y
pkg install -y clang python python-cryptography python-msgpack termux-services termux-api

echo "== venv at $ESTAFET_VENV (sees pkg's cryptography and msgpack)"
mkdir -p "$(dirname "$ESTAFET_VENV")"
python -m venv --system-site-packages "$ESTAFET_VENV"
"$ESTAFET_VENV/bin/python" -c "import cryptography, msgpack" || {
    echo "python-cryptography / python-msgpack from pkg are not visible in the venv" >&2
    exit 1
}

echo "== estafet and its pure-Python dependencies"
# No C compiler needed: build the pure-Python fallbacks when no Android wheel exists.
export SKIP_CYTHON=1 AIOHTTP_NO_EXTENSIONS=1 MULTIDICT_NO_EXTENSIONS=1 YARL_NO_EXTENSIONS=1 \
    FROZENLIST_NO_EXTENSIONS=1 PROPCACHE_NO_EXTENSIONS=1
"$ESTAFET_VENV/bin/pip" install --upgrade pip
"$ESTAFET_VENV/bin/pip" install "aiohttp>=3.9" "zeroconf>=0.131" "sqlite-utils>=4.0" "click>=8.1" \
    "segno>=1.5"
"$ESTAFET_VENV/bin/pip" install --no-deps "$SOURCE"
"$ESTAFET_VENV/bin/pip" check
ln -sf "$ESTAFET_VENV/bin/estafet" "$PREFIX/bin/estafet"

echo "== service (termux-services) and boot script (Termux:Boot)"
mkdir -p "$ESTAFET_HOME"
chmod 700 "$HOME/.estafet" "$ESTAFET_HOME"
SERVICE="$PREFIX/var/service/estafet"
mkdir -p "$SERVICE/log"
cp "$HERE/service/estafet/run" "$SERVICE/run"
chmod 755 "$SERVICE/run"
ln -sf "$PREFIX/share/termux-services/svlogger" "$SERVICE/log/run"
mkdir -p "$HOME/.termux/boot"
cp "$HERE/boot/start-estafet" "$HOME/.termux/boot/start-estafet"
chmod 755 "$HOME/.termux/boot/start-estafet"

cat <<NEXT

Installed. Next steps:
  1. Restart Termux once (termux-services starts its supervisor in a new session).
  2. termux-setup-storage          # allow access to photos (~/storage/dcim/Camera)
  3. (umask 077; cat > ~/.estafet/passphrase)    # the key passphrase, then Ctrl-D
     estafet node init --home "$ESTAFET_HOME" --sweep --passphrase-file ~/.estafet/passphrase
     (add --peer HOST:PORT / --central URL as your coordinator instructs; estafet node init --help)
  4. sv-enable estafet && sv up estafet          # logs: $PREFIX/var/log/sv/estafet/current
  5. Open the Termux:Boot app once so the relay starts after a reboot.
  6. Android settings: Battery -> Termux -> Unrestricted (no battery optimisation).
  7. The officer's app: `estafet app` prints http://127.0.0.1:7421/ and opens it in the browser.
  8. Android 12+ kills "phantom" processes: keep ONE Termux session; see docs/deploy.md.
NEXT
