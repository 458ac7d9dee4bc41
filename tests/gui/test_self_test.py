"""`playground gui --self-test --screenshot PATH`: the real app end to end, offscreen."""

import os
import subprocess
import sys

import pytest


def run_self_test(tmp_path, spec):
    shot = tmp_path / "shot.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PLAYGROUND_HOME=str(tmp_path / "home"))
    proc = subprocess.run(
        [sys.executable, "-m", "playground", "gui", "--self-test", "--screenshot", str(shot),
         "--config", spec],
        env=env, capture_output=True, text=True, timeout=600,
    )
    return proc, shot


def test_self_test_on_a_tiny_model(tmp_path, tiny_dir):
    proc, shot = run_self_test(tmp_path, f"model={tiny_dir},max_new_tokens=8")
    assert proc.returncode == 0, proc.stderr
    assert "self-test passed: 2 replies" in proc.stdout
    from PySide6.QtGui import QImage

    image = QImage(str(shot))
    assert image.width() >= 1280 and image.height() >= 800


def test_self_test_fails_loudly_on_a_bad_model(tmp_path):
    proc, shot = run_self_test(tmp_path, "model=/no/such/model")
    assert proc.returncode != 0
    assert "does not exist" in proc.stderr
    assert not shot.exists()


@pytest.mark.real_model
def test_self_test_on_the_default_model(tmp_path):
    proc, shot = run_self_test(tmp_path, "max_new_tokens=24")
    assert proc.returncode == 0, proc.stderr
    assert shot.stat().st_size > 10_000
