"""Finding the models on the machine from their headers: GGUF files (also Ollama's
extension-less blobs) and model folders, with format, parameters, the fast path's
verdict and the RAM they need; a damaged file is a row that says so."""

from gguf_files import write_tiny_gguf

from playground.core.formats import model_scan


def test_files_and_folders_are_found_with_what_a_user_needs_to_choose(tmp_path, tiny_dir):
    root = tmp_path / "models"
    (root / "deep" / "er").mkdir(parents=True)
    fast = write_tiny_gguf(root / "deep" / "er" / "tiny-q4k.gguf", {})
    blob = root / "blobs" / "sha256-abc"
    blob.parent.mkdir()
    blob.write_bytes(fast.read_bytes())  # Ollama's store: no extension, GGUF magic
    (root / "broken.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    (root / "notes.txt").write_text("not a model")
    found = model_scan.scan([root, tiny_dir])
    by_path = {m.path.name: m for m in found}
    assert set(by_path) == {"tiny-q4k.gguf", "sha256-abc", "broken.gguf", tiny_dir.name}
    f = by_path["tiny-q4k.gguf"]
    assert f.kind == "gguf" and f.arch == "llama" and f.params and f.params > 0
    assert f.fast is None and f.spec().endswith(",quant=gguf-native")
    assert f.need_mb > f.size_mb and f.fits(1e9) and not f.fits(1.0)
    from collections import Counter

    from gguf import GGUFReader

    reader = GGUFReader(str(fast))  # the header read by hand says what gguf's reader says
    assert f.params == sum(int(t.n_elements) for t in reader.tensors)
    assert f.types == Counter(t.tensor_type.name for t in reader.tensors if len(t.shape) >= 2)
    assert by_path["broken.gguf"].problem.startswith("unreadable")
    folder = by_path[tiny_dir.name]
    assert folder.kind == "folder" and folder.params and folder.fmt.startswith("F")


def test_a_file_without_native_blocks_says_which_types_and_what_happens(tmp_path):
    path = write_tiny_gguf(tmp_path / "q2.gguf", {"ffn_down": "Q2_K"})
    (m,) = model_scan.scan([tmp_path])
    assert m.fast and "Q2_K" in m.fast and "float32" in m.fast
    assert m.spec() == f"model={path}"


def test_half_precision_matrices_are_on_the_fast_path(tmp_path):
    write_tiny_gguf(tmp_path / "half.gguf", {"ffn_down": "F16", "attn_q": "BF16"})
    (m,) = model_scan.scan([tmp_path])
    assert m.fast is None


def test_a_hostile_header_is_a_row_that_says_so_not_a_hang(tmp_path):
    """Counts a file cannot hold, too many dimensions, a FIFO named .gguf: refused from
    the header's own numbers, fast, with no large allocation."""
    import os
    import struct

    huge_tensors = tmp_path / "many.gguf"
    huge_tensors.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 2**63, 0) + b"\0" * 64)
    huge_array = tmp_path / "array.gguf"
    key = b"tokenizer.ggml.tokens"
    huge_array.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key))
                           + key + struct.pack("<IIQ", 9, 8, 2**62) + b"\0" * 64)
    os.mkfifo(tmp_path / "pipe.gguf")  # would block a reader forever
    found = {m.path.name: m for m in model_scan.scan([tmp_path])}
    assert set(found) == {"many.gguf", "array.gguf"}
    assert all(m.problem and m.problem.startswith("unreadable") for m in found.values())
