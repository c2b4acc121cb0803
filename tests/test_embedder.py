"""The embedder's batching bounds its working memory without changing any vector."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from bench.client import call, wait_for_model
from bench.report import rss_mib
from daemon.config import EmbedderConfig
from daemon.embedder import load_model
from tests.conftest import embedded, free_port, mcp_client, start_daemon, stop_daemon, write_config

pytestmark = pytest.mark.anyio


async def vectors(model_dir: Path, cache: Path, texts: list[str], **config: Any) -> np.ndarray:
    return await embedded(EmbedderConfig(model_path=str(model_dir), **config), cache, texts)


async def test_vectors_are_the_same_however_many_tokens_a_model_call_may_hold(
    model_dir: Path, tmp_path: Path
) -> None:
    """Long and short texts mixed: with 256 tokens per call (one long text a call) and with the default,
    every vector equals the text's vector embedded alone, in the order given."""
    texts = [
        "short note about the billing service",
        " ".join(f"word{i} of a long conversation turn" for i in range(200)),  # cut at 256 tokens
        "Rosa prefers green tea",
        "a medium text " * 20,
        " ".join(f"another long turn {i}" for i in range(150)),
    ]
    alone = np.concatenate([await vectors(model_dir, tmp_path, [text]) for text in texts])
    for config in ({"batch_tokens": 256}, {"batch_tokens": 4096}, {}):
        together = await vectors(model_dir, tmp_path, texts, **config)
        assert np.allclose(together, alone, atol=1e-5)


async def test_a_batch_dealt_out_to_every_core_gives_each_text_its_vector_in_order(
    model_dir: Path, tmp_path: Path
) -> None:
    """The int8 model's batch of 40 texts, split over two lanes and over one (`threads = 1`): every vector
    equals the text's vector embedded alone, in the order given."""
    texts = [f"note {i}: " + "about the billing service " * (1 + i % 7) for i in range(40)]
    alone = np.concatenate([await vectors(model_dir, tmp_path, [text]) for text in texts])
    for config in ({"threads": 2}, {"threads": 1}):
        together = await vectors(model_dir, tmp_path, texts, **config)
        assert np.array_equal(together, alone)


def test_batch_tokens_is_a_checked_setting() -> None:
    assert EmbedderConfig().batch_tokens == 512
    with pytest.raises(msgspec.ValidationError, match=r"Expected `int` >= 256 - at `\$.batch_tokens`"):
        msgspec.convert({"batch_tokens": 100}, EmbedderConfig)


def test_the_model_threads_sleep_between_calls_and_vectors_do_not_change(
    model_dir: Path, tmp_path: Path
) -> None:
    """onnxruntime's pool threads spin after each call by default, burning a core that a search's SQLite and
    KNN work needs: the loaded model's session has spinning off, keeps the arena off, and embeds as before
    (the float model here; tests/test_quantized_model.py checks the int8 one's session)."""
    from fastembed import TextEmbedding

    config = EmbedderConfig(model_path=str(model_dir), precision="float32")
    model = load_model(config, tmp_path)
    options = model.model.model.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert options.enable_cpu_mem_arena is False
    plain = TextEmbedding(config.model, specific_model_path=str(model_dir), cache_dir=str(tmp_path))
    texts = ["What did Lena decide about the billing service?", "Rosa prefers green tea"]
    assert np.array_equal(np.array(list(model.embed(texts))), np.array(list(plain.embed(texts))))


async def test_embedding_long_texts_in_the_daemon_peaks_within_a_bound_above_its_resting_memory(
    tmp_path: Path, model_dir: Path
) -> None:
    """Steps: memosd with the real model, warmed up by a search; 100 distinct texts at the model's 256-token
    window in one memory_add_batch; memosd's high-water mark (VmHWM) rose by less than 90 MiB over its resident
    memory before the batch (65 MiB measured; 111 MiB with glibc's own moving mmap threshold: daemon/heap.py)."""
    port = free_port()
    daemon = start_daemon(write_config(tmp_path, port=port, model=str(model_dir)), tmp_path, port)
    try:
        token = daemon.add_agent("writer")
        async with mcp_client(daemon.url, token) as client:
            await wait_for_model(client)
            before = rss_mib(daemon.process.pid)[0]
            items = [
                {"content": " ".join(f"turn {n} says word{i} about topic{(i * n) % 97}" for i in range(60))}
                for n in range(100)
            ]
            await call(client, "memory_add_batch", {"items": items})
            peak = rss_mib(daemon.process.pid)[1]
    finally:
        stop_daemon(daemon)
    assert peak - before < 90, f"resident {before:.0f} MiB before the batch, peak {peak:.0f} MiB"
