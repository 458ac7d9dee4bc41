"""Before the window opens: are the system libraries Qt's xcb platform plugin needs here?

A fresh Debian has Python and pip but not the X11/xcb libraries PySide6's wheel links
against, and Qt's own message then names only libxcb-cursor0. This runs ``ldd`` on the
xcb plugin and Qt's xcb library (without importing Qt), maps each missing library to
its Debian package, and installs them when it can (root with apt-get) or prints the
exact command. ``make run`` calls it; offscreen runs (tests, CI) skip it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

# library file -> Debian package (the xcb set Qt 6 loads, and what it pulls in)
PACKAGES = {
    "libxcb.so.1": "libxcb1", "libX11-xcb.so.1": "libx11-xcb1", "libX11.so.6": "libx11-6",
    "libxcb-cursor.so.0": "libxcb-cursor0", "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-util.so.1": "libxcb-util1", "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1", "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0", "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0", "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1", "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1", "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0", "libxkbcommon.so.0": "libxkbcommon0",
    "libEGL.so.1": "libegl1", "libGL.so.1": "libgl1", "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1", "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3", "libglib-2.0.so.0": "libglib2.0-0",
}


def qt_xcb_files() -> list[Path]:
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return []
    qt = Path(list(spec.submodule_search_locations)[0]) / "Qt"
    files = [qt / "plugins" / "platforms" / "libqxcb.so", qt / "lib" / "libQt6XcbQpa.so.6"]
    return [f for f in files if f.is_file()]


def _ldd(path: Path) -> str:
    return subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=False).stdout


def missing_libraries(files: list[Path], ldd: Callable[[Path], str] = _ldd) -> list[str]:
    missing: set[str] = set()
    for f in files:
        for line in ldd(f).splitlines():
            if "not found" in line:
                missing.add(line.split("=>")[0].strip())
    return sorted(missing)


def packages_for(libraries: list[str]) -> tuple[list[str], list[str]]:
    """Debian packages for the missing libraries, and libraries with no known package."""
    known = sorted({PACKAGES[lib] for lib in libraries if lib in PACKAGES})
    return known, [lib for lib in libraries if lib not in PACKAGES]


def main(files: list[Path] | None = None, ldd: Callable[[Path], str] = _ldd,
         can_install: bool | None = None) -> int:
    if sys.platform != "linux" or os.environ.get("QT_QPA_PLATFORM", "xcb") != "xcb":
        return 0
    if not shutil.which("ldd"):
        return 0
    missing = missing_libraries(qt_xcb_files() if files is None else files, ldd)
    if not missing:
        return 0
    packages, unknown = packages_for(missing)
    command = "apt-get install -y " + " ".join(packages)
    if can_install is None:
        can_install = os.geteuid() == 0 and shutil.which("apt-get") is not None
    if packages and not unknown and can_install:
        print(f"make run: installing the libraries Qt's window needs: {' '.join(packages)}")
        ok = subprocess.run(["apt-get", "update", "-qq"], check=False).returncode == 0
        ok = ok and subprocess.run(["apt-get", "install", "-y", "-qq", *packages],
                                   check=False).returncode == 0
        if ok:
            return 0
    what = f"run: sudo {command}" if packages else ""
    extra = f" (no known package for {', '.join(unknown)})" if unknown else ""
    print(f"make run: Qt's window needs system libraries that are missing: {', '.join(missing)}; "
          f"{what}{extra}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
