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


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_ctrl_c_and_sigterm_close_the_app_cleanly_saving_settings(tmp_path, tiny_dir, signum):
    import signal

    home = tmp_path / "home"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PLAYGROUND_HOME=str(home))
    proc = subprocess.Popen(
        [sys.executable, "-m", "playground", "gui", "--config", f"model={tiny_dir}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:  # until the app says its model is ready (or it exits)
        lines.append(line)
        if line.startswith("playground: ready"):
            break
    assert proc.poll() is None, "".join(lines)
    proc.send_signal(getattr(signal, signum))
    out, rest = proc.communicate(timeout=60)
    err = "".join(lines) + rest
    assert proc.returncode == 0, err
    assert "Traceback" not in err and f"{signum}: closing the window" in err
    settings = (home / "settings.ini").read_text()
    assert "geometry=" in settings and f"model={tiny_dir}" in settings


def test_self_test_leaves_unreadable_stored_settings_alone(tmp_path, tiny_dir):
    """A scripted run must not wipe a settings file it cannot read."""
    home = tmp_path / "home"
    home.mkdir()
    stored = '[General]\nconfig="quant=int3"\nsomething_else=kept\n'
    (home / "settings.ini").write_text(stored)
    proc, _shot = run_self_test(tmp_path, f"model={tiny_dir},max_new_tokens=4")
    assert proc.returncode == 0, proc.stderr
    assert (home / "settings.ini").read_text() == stored
