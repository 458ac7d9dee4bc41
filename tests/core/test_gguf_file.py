"""The GGUF header reader (formats/gguf_file.py) against gguf's own GGUFReader, on files
written in the test: the same tensors, bytes, offsets and metadata, and one-line errors
for files that are not GGUFs or end inside their header."""

from __future__ import annotations

import numpy as np
import pytest

from playground.core.formats import gguf_file
from tests.gguf_files import write_tiny_gguf

MIX = {"attn_q": "Q4_K", "attn_k": "Q8_0", "attn_v": "Q6_K", "attn_output": "Q5_0",
       "ffn_gate": "F16", "ffn_up": "Q4_1", "ffn_down": "Q5_K", "token_embd": "Q6_K"}


def test_the_same_tensors_and_metadata_as_gguf_reads(tmp_path):
    from gguf import GGUFReader

    path = write_tiny_gguf(tmp_path / "mix.gguf", MIX, arch="qwen3",
                           rope_freqs=np.linspace(1, 4, 32, dtype=np.float32))
    ours, theirs = gguf_file.read(path), GGUFReader(str(path))
    assert ours.architecture == "qwen3"
    assert [t.name for t in ours.tensors] == [t.name for t in theirs.tensors]
    for mine, reference in zip(ours.tensors, theirs.tensors, strict=True):
        assert mine.tensor_type == reference.tensor_type, mine.name
        assert mine.data_offset == reference.data_offset, mine.name
        assert mine.data.shape == reference.data.shape, mine.name
        assert mine.data.dtype == reference.data.dtype, mine.name
        assert np.array_equal(mine.data, reference.data), mine.name
    types = {t.tensor_type.name for t in ours.tensors}
    assert {"Q4_K", "Q8_0", "Q6_K", "Q5_0", "F16", "Q4_1", "Q5_K", "F32"} <= types
    # every scalar the reference reads, equal; string arrays skipped (their length) or kept
    for key, fld in theirs.fields.items():
        if key.startswith("GGUF.") or key not in ours.metadata:
            continue
        if len(fld.types) == 1 and fld.types[0].name != "STRING":
            assert ours.metadata[key] == fld.parts[fld.data[0]][0], key
    tokens = theirs.fields["tokenizer.ggml.tokens"]
    assert ours.metadata["tokenizer.ggml.tokens"] == len(tokens.data)
    kept = gguf_file.read(path, string_arrays=("tokenizer.ggml.tokens",))
    assert kept.metadata["tokenizer.ggml.tokens"] == [
        bytes(tokens.parts[i]).decode() for i in tokens.data]


def test_a_file_that_is_not_a_gguf_or_ends_early_is_one_line(tmp_path):
    path = write_tiny_gguf(tmp_path / "ok.gguf", {})
    text = tmp_path / "notes.gguf"
    text.write_text("not a model at all\n")
    with pytest.raises(ValueError, match="not a GGUF file"):
        gguf_file.read(text)
    short = tmp_path / "short.gguf"
    short.write_bytes(path.read_bytes()[:4000])  # inside the vocabulary
    with pytest.raises(ValueError, match="ends inside its GGUF header") as err:
        gguf_file.read(short)
    assert "\n" not in str(err.value)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[:-100])  # the last tensor's data cut short
    with pytest.raises(ValueError, match="runs past the end of the file"):
        gguf_file.read(cut)
