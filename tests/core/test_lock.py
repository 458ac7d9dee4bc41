"""requirements.lock: exact versions that make setup, CI and make package install."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("check_lock", ROOT / "packaging" / "check_lock.py")
check_lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_lock)


def test_the_lock_pins_every_dependency_exactly():
    pins = check_lock.pins((ROOT / "requirements.lock").read_text())
    assert pins["torch"] == "2.13.0"  # the local CPU build, never a CUDA one
    assert pins["pyside6-essentials"] == "6.11.3"  # 6.12.0 aborts on signal emits
    for name in ("transformers", "fastapi", "pytest", "pyinstaller", "gguf"):
        assert name in pins
    assert not any(name.startswith("nvidia") for name in pins)


def test_a_version_other_than_the_locks_is_named():
    wrong = check_lock.mismatches({"pytest": "0.0.1", "no-such-package-here": "1.0"})
    assert any(line.startswith("pytest: ") and "lock: 0.0.1" in line for line in wrong)
    assert any("no-such-package-here: not installed" in line for line in wrong)


def test_this_environment_is_the_locks():
    assert check_lock.mismatches(check_lock.pins((ROOT / "requirements.lock").read_text())) == []
