import pytest

from playground.core.config import KEYS, ConfigError, RunConfig

FULL = (
    "model=default,variant=base,quant=int8-dynamic,prune=0.3,prune_method=structured,"
    "device=cpu,threads=2,kv_cache=on,prefix_cache=on,response_cache=off,compile=off,"
    "draft=none,max_new_tokens=128,temperature=0,seed=0"
)


def test_architecture_example_parses_and_round_trips():
    cfg = RunConfig.parse(FULL)
    assert cfg.quant == "int8-dynamic" and cfg.prune == 0.3 and cfg.threads == 2
    assert cfg.prefix_cache is True and cfg.response_cache is False
    assert RunConfig.parse(cfg.format()) == cfg
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_threads_auto_is_the_default_count():
    assert RunConfig.parse("threads=auto").threads == 0 == RunConfig().threads


def test_every_key_is_in_the_spec_string():
    text = RunConfig().format()
    assert [part.split("=")[0] for part in text.split(",")] == list(KEYS)


def test_only_changed_and_defaults():
    cfg = RunConfig.parse("quant=bf16")
    assert cfg.format(only_changed=True) == "quant=bf16"
    assert RunConfig.parse("") == RunConfig()


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ("quantize=int8", ["unknown key 'quantize'", "quant"]),
        ("quant=int4", ["quant", "'int4'", "bnb-4bit-nf4"]),
        ("prune=1.5", ["prune", "0.0 to 0.9"]),
        ("prune=lots", ["prune", "not a number"]),
        ("kv_cache=maybe", ["kv_cache", "on, off"]),
        ("device=tpu", ["device", "cuda:N"]),
        ("threads=-1", ["threads"]),
        ("max_new_tokens=0", ["max_new_tokens"]),
        ("temperature=-1", ["temperature"]),
        ("top_p=0", ["top_p"]),
        ("variant=tiny", ["variant", "distilled"]),
        ("prefix_cache=on,kv_cache=off", ["prefix_cache", "kv_cache=on"]),
        ("quant", ["key=value"]),
        ("quant=bf16,quant=fp16", ["given twice"]),
    ],
)
def test_bad_values_name_key_and_allowed(spec, names):
    with pytest.raises(ConfigError) as err:
        RunConfig.parse(spec)
    message = str(err.value)
    assert "\n" not in message
    for name in names:
        assert name in message


def test_frozen_and_replace():
    cfg = RunConfig()
    with pytest.raises(AttributeError):
        cfg.quant = "bf16"  # type: ignore[misc]
    assert cfg.replace(quant="bf16").quant == "bf16"
    with pytest.raises(ConfigError):
        cfg.replace(quant="nope")


def test_model_path_with_comma_stays_whole():
    cfg = RunConfig.parse("model=/tmp/a,b/model,quant=bf16")
    assert cfg.model == "/tmp/a,b/model" and cfg.quant == "bf16"
