#!/usr/bin/env bash
# Build the one-folder app, a tar.gz and a .deb from the project's own .venv.
#   dist/LatencyPlayground/                              the app (run ./latency-playground)
#   dist/LatencyPlayground-<version>-linux-x86_64.tar.gz
#   dist/latency-playground_<version>_amd64.deb           installs to /opt, with a .desktop entry
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
VERSION=$($PY -c "import tomllib; print(tomllib.load(open('pyproject.toml','rb'))['project']['version'])")
$PY -m pip install -q -c requirements.lock pyinstaller
# what gets bundled is what CI tested: every package at requirements.lock's version
$PY packaging/check_lock.py
started=$(date +%s)
# The native kernels, for any x86-64 CPU with AVX2/FMA/F16C (not -march=native: the
# app runs on other machines); the app checks the CPU before loading them.
rm -f build/native/qgemv.so
$PY -c "from pathlib import Path; from playground.core import native
native.build(Path('build/native/qgemv.so'), native.PORTABLE_FLAGS)"
$PY -m PyInstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller \
    packaging/latency_playground.spec
built=$(date +%s)

ARCHIVE="dist/LatencyPlayground-${VERSION}-linux-x86_64.tar.gz"
tar -C dist -czf "$ARCHIVE" LatencyPlayground

root="build/deb/latency-playground_${VERSION}"
rm -rf "$root"
mkdir -p "$root/DEBIAN" "$root/opt" "$root/usr/bin" "$root/usr/share/applications" \
         "$root/usr/share/icons/hicolor/256x256/apps"
cp -a dist/LatencyPlayground "$root/opt/LatencyPlayground"
ln -s /opt/LatencyPlayground/latency-playground "$root/usr/bin/latency-playground"
cp assets/latency-playground.desktop "$root/usr/share/applications/"
cp assets/icon.png "$root/usr/share/icons/hicolor/256x256/apps/latency-playground.png"
cat > "$root/DEBIAN/control" <<CONTROL
Package: latency-playground
Version: ${VERSION}
Architecture: amd64
Maintainer: LLM Latency Playground developers <noreply@example.invalid>
Depends: libgl1, libegl1, libfontconfig1, libxkbcommon0, libdbus-1-3, libglib2.0-0, libxcb1, libx11-xcb1, libxcb-cursor0, libxcb-icccm4, libxcb-image0, libxcb-keysyms1, libxcb-randr0, libxcb-render0, libxcb-render-util0, libxcb-shape0, libxcb-shm0, libxcb-sync1, libxcb-xfixes0, libxcb-xkb1, libxkbcommon-x11-0
Installed-Size: $(du -sk "$root/opt" | cut -f1)
Section: devel
Priority: optional
Description: See what each optimization does to a language model's latency
 Load a language model, switch quantization, pruning and caching on and off,
 chat with it and watch time-to-first-token, tokens/sec and memory live.
 Bundles SmolLM2-135M-Instruct; needs no network and no Python.
CONTROL
DEB="dist/latency-playground_${VERSION}_amd64.deb"
dpkg-deb -Zgzip -z1 --root-owner-group --build "$root" "$DEB" >/dev/null
done_at=$(date +%s)

echo "build: $((built - started)) s pyinstaller, $((done_at - built)) s archives"
echo "unpacked: $(du -sm dist/LatencyPlayground | cut -f1) MB"
echo "archive:  $(du -m "$ARCHIVE" | cut -f1) MB  $ARCHIVE"
echo "deb:      $(du -m "$DEB" | cut -f1) MB  $DEB"
