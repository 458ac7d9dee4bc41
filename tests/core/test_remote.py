"""endpoint=URL: chat, bench and compare against an OpenAI-compatible server (our own
`playground serve` on loopback), with the same timeline metrics as a local model."""

import pytest

from playground.core.config import ConfigError, RunConfig
from playground.core.pipeline import build_engine

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

HELLO = [{"role": "user", "content": "Hello there"}]


def test_chat_streams_from_the_endpoint_with_a_timeline(server, tiny_dir, monkeypatch):
    url, served = server(api_key="s3cret", batching=False)
    monkeypatch.setenv("MY_KEY", "s3cret")
    config = RunConfig.parse(f"endpoint={url}/v1,api_key_env=MY_KEY,max_new_tokens=8")
    engine = build_engine(config)
    assert engine.info["model_name"] == "tiny" and "remote endpoint" in engine.decode_path()
    pieces = []
    result = engine.chat(HELLO, on_token=pieces.append)
    local = build_engine(RunConfig(model=str(tiny_dir), max_new_tokens=8))
    local.eos_ids = set()
    assert result.reply == "".join(pieces) == local.chat(HELLO).reply
    m = result.metrics
    assert m.new_tokens == 8 and m.prompt_tokens == len(local.prompt_ids(HELLO))
    assert m.ttft_ms > 0 and len(m.itl_ms) == 7 and m.decode_tok_s > 0
    assert result.finish_reason == "length" and "s3cret" not in config.format()
    stopped = engine.chat(HELLO, should_stop=lambda: True)
    assert stopped.finish_reason == "cancelled" and stopped.metrics.new_tokens >= 1


def test_endpoint_errors_are_one_line_and_name_what_is_wrong(server, monkeypatch):
    from conftest import free_port

    from playground.core.backends.remote import EndpointError

    with pytest.raises(EndpointError, match="cannot be reached"):
        build_engine(RunConfig.parse(f"endpoint=http://127.0.0.1:{free_port()}/v1"))
    url, _ = server(api_key="right")
    monkeypatch.setenv("OPENAI_API_KEY", "wrong")
    with pytest.raises(EndpointError, match="refused the API key"):
        build_engine(RunConfig.parse(f"endpoint={url}/v1"))
    monkeypatch.setenv("OPENAI_API_KEY", "right")
    with pytest.raises(EndpointError, match="'gpt-9' is not served.*served: tiny"):
        build_engine(RunConfig.parse(f"endpoint={url}/v1,endpoint_model=gpt-9"))
    for spec, words in [("endpoint=ftp://x", "not a URL"),
                        ("endpoint=http://x/v1,quant=int8-weight", "quant: the endpoint runs"),
                        ("endpoint_model=tiny", "needs endpoint=URL"),
                        ("endpoint=http://x/v1,api_key_env=sk-123-abc", "not an environment")]:
        with pytest.raises(ConfigError, match=words):
            RunConfig.parse(spec)


def test_compare_scores_an_endpoint_on_its_replies(server, tiny_dir):
    from playground.core.compare import run_compare

    url, _ = server(batching=True)
    local = RunConfig(model=str(tiny_dir), max_new_tokens=8)
    remote = RunConfig.parse(f"endpoint={url}/v1,max_new_tokens=8")

    def build(config, progress=lambda m: None, should_stop=None):
        engine = build_engine(config, progress=progress, should_stop=should_stop)
        if not config.endpoint:
            engine.eos_ids = set()  # as the server's engine
        return engine

    out = run_compare([local, remote], [HELLO, [{"role": "user", "content": "Name a colour"}]],
                      warmup=0, repeats=1, build=build)
    base, far = out.results
    assert far.quality["greedy_match"] == 1.0  # the same model behind HTTP
    assert far.quality["top1_agreement"] == pytest.approx(1.0)  # the baseline agrees
    assert "endpoint's own replies" in far.quality["note"]
    assert far.summary["peak_rss_mb"] is None and far.summary["weights_mb"] is None
    assert far.summary["ttft_ms"]["mean"] > 0 and base.quality["kl_mean"] == pytest.approx(0)
