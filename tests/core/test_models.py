import shutil

import pytest

from playground.core.models import ModelError, load, resolve


def test_loads_a_local_folder_and_records_load_time(tiny_dir):
    loaded = load(str(tiny_dir))
    assert loaded.load_s > 0
    assert loaded.architecture == "LlamaForCausalLM"
    assert loaded.source.kind == "folder"


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ("/no/such/folder", ["does not exist"]),
        ("/no/such/model.gguf", ["GGUF file not found"]),
        ("not a model", ["not 'default'"]),
    ],
)
def test_resolve_errors(model, words):
    with pytest.raises(ModelError) as err:
        resolve(model)
    for word in words:
        assert word in str(err.value)


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        resolve(str(tmp_path))


def test_hub_id_not_cached_while_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelError) as err:
        load("someone/not-cached-model")
    assert "not in the local Hugging Face cache" in str(err.value)
    assert "offline" in str(err.value)


def test_pickle_only_checkpoint_is_refused_unless_opted_in(tiny_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_dir, folder)
    weights = folder / "model.safetensors"
    torch.save(load_file(weights), folder / "pytorch_model.bin")
    weights.unlink()
    with pytest.raises(ModelError, match="pickle"):
        load(str(folder))
    loaded = load(str(folder), allow_pickle=True)
    assert loaded.model is not None


def test_not_a_causal_lm(tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, vocab_size=100)).save_pretrained(tmp_path)
    with pytest.raises(ModelError, match="not a causal language model"):
        load(str(tmp_path))


def test_remote_code_needs_opt_in(tiny_dir, tmp_path):
    import json

    folder = tmp_path / "remote"
    shutil.copytree(tiny_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "my-custom-arch"
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.CustomModel"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="trust_remote_code=on"):
        load(str(folder))
