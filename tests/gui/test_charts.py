"""The live charts keep turns readable: numbered turns on a token axis that stay in
view, configs as letters named once in a key, no legends over the data."""

from playground.gui.charts import TURNS_SHOWN, ChartsPanel


def _turns(panel, labels, tokens=20):
    t = 100.0
    for label in labels:
        panel.turn_started(t, label)
        for _ in range(tokens):
            t += 0.05
            panel.add_token(t)
        panel.turn_finished(120.0)
        t += 30.0  # a long pause between turns must not squeeze them
    panel.redraw()


def test_five_turns_with_three_configs_get_letters_and_stay_in_view(qtbot):
    panel = ChartsPanel()
    qtbot.addWidget(panel)
    long = "quant=int8-dynamic, prune=0.3, prune_method=structured, threads=1, kv_cache=on"
    _turns(panel, ["fp32", "fp32", "int8-dynamic", long, "fp32"])
    assert panel.configs == ["fp32", "int8-dynamic", long]
    key = panel.key.text()
    assert "<b>A</b> fp32" in key and "<b>B</b> int8-dynamic" in key and "<b>C</b>" in key
    assert long not in key and long in panel.key.toolTip()  # elided, whole in the tooltip
    ticks = panel.ttft.getAxis("bottom")._tickLevels[0]
    assert [label for _x, label in ticks] == ["1\nA", "2\nA", "3\nB", "4\nC", "5\nA"]
    low, high = panel.speed.getViewBox().viewRange()[0]
    assert low <= panel.turn_x[0] and high >= panel.tokens_total  # every turn in view
    for plot in (panel.speed, panel.ttft, panel.itl, panel.memory):
        assert plot.getPlotItem().legend is None


def test_older_turns_scroll_out_by_turns_not_by_seconds(qtbot):
    panel = ChartsPanel()
    qtbot.addWidget(panel)
    _turns(panel, ["fp32"] * (TURNS_SHOWN + 4), tokens=10)
    low, high = panel.speed.getViewBox().viewRange()[0]
    assert low == panel.turn_x[-TURNS_SHOWN] and high > panel.tokens_total


def test_each_turn_has_its_own_bound_over_its_own_tokens(qtbot):
    """The bandwidth bound is drawn per turn, over that turn's tokens, at the value its
    record has (bytes read per token), not one line across every turn."""
    panel = ChartsPanel()
    qtbot.addWidget(panel)
    panel.set_reference(500.0, 120.0)
    t = 100.0
    for label, tokens, measured in (("int8", 10, 150.0), ("fp32", 6, 40.0)):
        panel.turn_started(t, label)
        for _ in range(tokens):
            t += 0.01
            panel.add_token(t)
        panel.turn_finished(50.0, measured)
        panel.set_reference(900.0, 60.0)  # the next config's bound, before its first turn
    panel.redraw()
    assert panel.bound_segments == [[0.0, 10.0, 150.0], [10.0, 16.0, 40.0]]
    x, y = panel.bound_curve.getData()
    assert list(x) == [0.0, 10.0, 10.0, 16.0] and list(y) == [150.0, 150.0, 40.0, 40.0]
