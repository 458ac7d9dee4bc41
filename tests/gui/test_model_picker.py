"""Models on this machine: the picker lists what a scan found (format, parameters, fast
path, fits in RAM) without freezing the window, and Use loads the picked one with the
quant that suits it."""

from gguf_files import write_tiny_gguf

WAIT_MS = 60_000


def test_use_loads_the_picked_gguf_on_its_own_blocks(qtbot, open_window, tiny_dir, tmp_path):
    from playground.core.config import RunConfig

    path = write_tiny_gguf(tmp_path / "mine.gguf", {})
    half = write_tiny_gguf(tmp_path / "q2.gguf", {"ffn_down": "Q2_K"})
    window = open_window(RunConfig(model=str(tiny_dir), max_new_tokens=4))
    window.controls.pick_model(roots=[tmp_path])
    picker = window.controls.picker
    qtbot.waitUntil(lambda: picker.table.rowCount() == 2, timeout=WAIT_MS)
    rows = {picker.table.item(r, 6).text(): r for r in range(2)}
    assert picker.table.item(rows[str(half)], 4).text() == "no"
    assert "Q2_K" in picker.table.item(rows[str(half)], 4).toolTip()
    assert picker.table.item(rows[str(path)], 4).text() == "yes"
    assert picker.table.item(rows[str(path)], 5).text().startswith("yes")
    picker.table.selectRow(rows[str(path)])
    with qtbot.waitSignal(window.model_ready, timeout=WAIT_MS):
        picker.use.click()
    assert window.controls.model.text() == str(path)
    assert window.good_config.quant == "gguf-native" and window.good_config.model == str(path)


def test_the_models_button_opens_the_picker(qtbot, open_window, tiny_dir, tmp_path,
                                            monkeypatch):
    """The Models… button (not only Ctrl+O): its clicked(bool) once arrived as the
    folders to scan and the picker raised a TypeError instead of opening."""
    from playground.core.config import RunConfig
    from playground.core.formats import model_scan

    monkeypatch.setattr(model_scan, "default_roots", lambda: [tmp_path])
    write_tiny_gguf(tmp_path / "mine.gguf", {})
    window = open_window(RunConfig(model=str(tiny_dir), max_new_tokens=4))
    window.controls.browse.click()
    picker = window.controls.picker
    qtbot.waitUntil(lambda: picker.table.rowCount() == 1, timeout=WAIT_MS)
    picker.reject()
