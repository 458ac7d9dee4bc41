"""make run's check of Qt's xcb libraries, with a fake ldd (no library is really missing)."""

from pathlib import Path

from playground import platform_check

FAKE = """\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x1)
\tlibweird.so.9 => not found
"""


def test_missing_libraries_are_named_with_their_packages(monkeypatch, capsys):
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    files = [Path("/fake/libqxcb.so")]
    assert platform_check.missing_libraries(files, lambda _f: FAKE) == [
        "libweird.so.9", "libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    code = platform_check.main(files, lambda _f: FAKE, can_install=False)
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "sudo apt-get install -y libxcb-icccm4 libxcb-keysyms1" in err
    assert "no known package for libweird.so.9" in err


def test_nothing_missing_or_offscreen_passes(monkeypatch):
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    ok = "\tlibxcb.so.1 => /lib/libxcb.so.1 (0x1)\n"
    assert platform_check.main([Path("/fake")], lambda _f: ok) == 0
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert platform_check.main([Path("/fake")], lambda _f: FAKE, can_install=False) == 0


def test_the_real_plugin_is_found_and_checked():
    files = platform_check.qt_xcb_files()
    assert any(f.name == "libqxcb.so" for f in files)
    assert isinstance(platform_check.missing_libraries(files), list)  # the real ldd runs
