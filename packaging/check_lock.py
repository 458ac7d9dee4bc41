"""Fail when the environment that builds the app is not requirements.lock's: every
package the lock names must be installed at exactly its version (a fresh install
resolving something newer than CI tested is what broke a package before)."""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"


def pins(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line and not line.startswith("-"):
            name, version = line.split("==", 1)
            out[re.sub(r"[-_.]+", "-", name.strip().lower())] = version.strip()
    return out


def mismatches(locked: dict[str, str]) -> list[str]:
    wrong = []
    for name, version in sorted(locked.items()):
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong.append(f"{name}: not installed (lock: {version})")
            continue
        if have.split("+")[0] != version.split("+")[0]:  # torch's local +cpu tag aside
            wrong.append(f"{name}: {have} installed, lock: {version}")
    return wrong


def main() -> int:
    wrong = mismatches(pins(LOCK.read_text()))
    for line in wrong:
        print(f"check_lock: {line}", file=sys.stderr)
    if wrong:
        print("check_lock: the environment is not requirements.lock's; run make setup "
              "(or make lock to refresh the lock on purpose)", file=sys.stderr)
        return 1
    print(f"check_lock: {len(pins(LOCK.read_text()))} packages at the lock's versions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
