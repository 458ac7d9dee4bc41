"""The backend control offers llama.cpp where llama-cpp-python is built."""
def test_the_gui_offers_llamacpp_only_where_it_is_built(qtbot, monkeypatch):
    """Without llama-cpp-python the backend is listed but disabled, its tooltip naming
    the command; picking llama.cpp disables what it cannot run."""
    import importlib.util

    from playground.gui.controls import ControlsPanel

    real = importlib.util.find_spec

    def installed(yes):
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: (
            (object() if yes else None) if name == "llama_cpp" else real(name, *a)))

    installed(False)
    missing = ControlsPanel(["cpu"])
    qtbot.addWidget(missing)
    item = missing.backend.model().item(missing.backend.findText("llamacpp"))
    assert not item.isEnabled() and "make llamacpp" in item.toolTip()
    installed(True)
    controls = ControlsPanel(["cpu"])
    qtbot.addWidget(controls)
    assert controls.backend.model().item(controls.backend.findText("llamacpp")).isEnabled()
    controls.quant.setCurrentText("int8-weight")
    controls.backend.setCurrentText("llamacpp")
    assert controls.quant.currentText() == "none" and not controls.compile.isEnabled()
    assert not controls.qat.isEnabled() and not controls.distilled.isEnabled()


def test_llamacpps_settings_round_trip_and_stay_off_elsewhere(qtbot, monkeypatch):
    """kv_type, flash_attn and batch are controls on llama.cpp (a quantized KV cache
    turns flash attention on, as llama.cpp needs), disabled on the other backends, and
    a config shown and read back is the same config."""
    import importlib.util

    from playground.core.config import RunConfig
    from playground.gui.controls import ControlsPanel

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: (
        object() if name == "llama_cpp" else real(name, *a)))
    panel = ControlsPanel(["cpu"])
    qtbot.addWidget(panel)
    assert not panel.kv_type.isEnabled() and not panel.batch.isEnabled()  # torch
    cfg = RunConfig.parse("backend=llamacpp,kv_type=q8_0,flash_attn=on,batch=128")
    panel.set_config(cfg)
    assert panel.config() == cfg and panel.kv_type.isEnabled()
    assert not panel.flash_attn.isEnabled() and not panel.gpu_layers.isEnabled()
    panel.kv_type.setCurrentText("f16")
    assert panel.flash_attn.isEnabled()
    panel.backend.setCurrentText("torch")
    assert panel.config().kv_type == "f16" and panel.config().batch == 512


def test_llamacpps_quant_types_only_on_llamacpp(qtbot, monkeypatch):
    import importlib.util

    from playground.core.config import RunConfig
    from playground.gui.controls import ControlsPanel

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: (
        object() if name == "llama_cpp" else real(name, *a)))
    panel = ControlsPanel(["cpu"])
    qtbot.addWidget(panel)
    item = panel.quant.model().item(panel.quant.findText("q4_k_m"))
    assert not item.isEnabled() and "backend=llamacpp only" in item.toolTip()
    panel.set_config(RunConfig.parse("backend=llamacpp,quant=q4_k_m"))
    assert panel.config().quant == "q4_k_m" and item.isEnabled()
    assert not panel.quant.model().item(panel.quant.findText("int8-weight")).isEnabled()
    assert panel.prune.toolTip().startswith("torch only (backend=llamacpp runs none")
