"""The int8 embedding model (the default precision): a checked setting, vectors close to the float model's,
one cached copy made atomically, and a change of precision that embeds every memory again."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import msgspec
import numpy as np
import pytest

from daemon import NewMemory, SearchQuery, agent_named, open_services, sqlite_driver
from daemon.backends import open_store
from daemon.config import EmbedderConfig, parse_config
from daemon.daemon_status import DaemonStatus
from daemon.embedder import Embedder, load_model
from daemon.errors import ConfigError
from daemon.quantized import int8_path
from daemon.vectors import VectorIndex
from memos_cli.doctor import daemon_embedder
from tests.conftest import QUANTIZED_DIR, embedded, free_port, load_config, write_config

pytestmark = pytest.mark.anyio
ALICE = agent_named("alice")
TEXTS = [
    "What did Lena decide about the billing service?",
    "Rosa prefers green tea in the morning",
    " ".join(f"a long conversation turn {i} about the deployment pipeline" for i in range(80)),  # cut at 256
]


def test_precision_is_a_checked_setting_and_int8_by_default() -> None:
    assert EmbedderConfig().precision == "int8"
    with pytest.raises(ConfigError) as raised:
        parse_config('[embedder]\nprecision = "int4"\n', "cfg.toml")
    assert str(raised.value) == "cfg.toml: [embedder] precision: Invalid enum value 'int4'"
    # The stored vectors name their precision: a change of it is a change of model.
    assert EmbedderConfig().identity == "sentence-transformers/all-MiniLM-L6-v2 (int8)"
    assert EmbedderConfig(precision="float32").identity == "sentence-transformers/all-MiniLM-L6-v2"


async def test_int8_vectors_are_unit_length_and_close_to_the_float_models(
    model_dir: Path, tmp_path: Path
) -> None:
    """The same texts through the daemon's embedder at each precision: int8 vectors are unit length, not the
    float ones, and within cosine 0.97 of them (0.993 on average over LME and LoCoMo turns)."""
    int8 = await embedded(
        EmbedderConfig(model_path=str(model_dir), quantized_dir=str(QUANTIZED_DIR)), tmp_path, TEXTS
    )
    float32 = await embedded(EmbedderConfig(model_path=str(model_dir), precision="float32"), tmp_path, TEXTS)
    assert np.allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(int8, float32, atol=1e-4)
    assert ((int8 * float32).sum(axis=1) > 0.97).all(), (int8 * float32).sum(axis=1)


def test_the_int8_copy_is_made_once_reused_and_made_again_when_damaged(
    model_dir: Path, tmp_path: Path
) -> None:
    """Steps: load the int8 model (the copy is made: one file, no temporary left); load it again (the same
    file, untouched, and the session keeps spinning off); cut the file to a third (as a crash of the disk
    might) and load again: it is made again whole and embeds as before."""
    config = EmbedderConfig(model_path=str(model_dir), quantized_dir=str(tmp_path / "int8"))
    first = np.array(list(load_model(config, tmp_path / "models").embed(TEXTS)))
    [made] = (tmp_path / "int8").iterdir()
    before = made.stat()

    model = load_model(config, tmp_path / "models")
    session = model.model.model
    assert Path(session._model_path) == made
    assert session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert session.get_session_options().enable_cpu_mem_arena is False
    assert list((tmp_path / "int8").iterdir()) == [made]
    assert (made.stat().st_mtime_ns, made.stat().st_ino) == (before.st_mtime_ns, before.st_ino)

    made.write_bytes(made.read_bytes()[: before.st_size // 3])
    again = np.array(list(load_model(config, tmp_path / "models").embed(TEXTS)))
    assert list((tmp_path / "int8").iterdir()) == [made]
    assert made.stat().st_size == before.st_size
    assert np.allclose(again, first, atol=1e-6)


def test_the_copy_is_named_for_its_source_so_another_model_gets_another(tmp_path: Path) -> None:
    source = tmp_path / "model.onnx"
    source.write_bytes(b"one model")
    name = int8_path(source, tmp_path / "int8")
    assert int8_path(source, tmp_path / "int8") == name
    os.utime(source, ns=(1, 1))  # the same file downloaded again
    assert int8_path(source, tmp_path / "int8") != name
    other = tmp_path / "other" / "model.onnx"
    other.parent.mkdir()
    other.write_bytes(b"one model")
    os.utime(other, ns=(1, 1))
    assert int8_path(other, tmp_path / "int8") != int8_path(source, tmp_path / "int8")


async def test_changing_the_precision_embeds_every_memory_again_and_search_is_lexical_meanwhile(
    model_dir: Path, tmp_path: Path
) -> None:
    """Steps: memories written with the float32 model; the vector index opened with the int8 one (the
    default) says every memory is to be embedded again and is not used for search meanwhile, with a reason
    saying so (as does the index opened again before it is done); its backfill embeds them all (the meta table names the int8 model, every memory has a vector
    close to its float one); then a hybrid search finds the obvious memory."""
    contents = ["Rosa prefers green tea in the morning", "The billing service moves to Postgres", "Ivo runs"]
    path = write_config(tmp_path, port=free_port(), model=str(model_dir), extra='precision = "float32"')
    async with open_services(load_config(path, environ={"HOME": str(tmp_path)})) as services:
        await services.vectors.attached.wait()
        await services.identities.add("alice")
        for content in contents:
            await services.additions.add(ALICE, None, NewMemory(content=content))
    conn = sqlite_driver.connect(str(tmp_path / "data" / "memos.db"))
    float_vectors = {seq: blob for seq, blob in conn.execute("SELECT rowid, embedding FROM memory_vectors")}
    assert len(float_vectors) == len(contents)
    conn.close()

    config = load_config(
        write_config(tmp_path, port=free_port(), model=str(model_dir)), {"HOME": str(tmp_path)}
    )
    assert config.embedder.precision == "int8"
    store = await open_store(config)
    try:
        embedder = Embedder(config.embedder, tmp_path / "models")
        vectors = VectorIndex(store, embedder)
        async with anyio.create_task_group() as tg:
            await tg.start(embedder.run)
            with anyio.fail_after(120):
                await embedder.ready.wait()
                await vectors.attach()
                assert vectors.reembedding == len(contents) and not vectors.usable
                assert vectors.unavailable_reason() == (
                    "the embedding model changed (from sentence-transformers/all-MiniLM-L6-v2 to"
                    " sentence-transformers/all-MiniLM-L6-v2 (int8)): memories are being embedded again, about 3"
                    " left; results are lexical until then"
                )
                restarted = VectorIndex(store, embedder)  # a CLI command beside it, or memosd started again
                await restarted.attach(read_only=True)
                assert restarted.reembedding == len(contents) and not restarted.usable
                await tg.start(vectors.backfill)
                while not vectors.usable:  # noqa: ASYNC110 - the backfill sets no event for this
                    await anyio.sleep(0.05)
            assert vectors.reembedding is None
            tg.cancel_scope.cancel()
    finally:
        await store.close()

    conn = sqlite_driver.connect(str(config.database_path))
    meta = dict(conn.execute("SELECT key, value FROM meta WHERE key LIKE 'embedding_%'").fetchall())
    int8_vectors = {seq: blob for seq, blob in conn.execute("SELECT rowid, embedding FROM memory_vectors")}
    unembedded = conn.execute("SELECT count(*) FROM memories WHERE embedded = 0").fetchone()[0]
    conn.close()
    assert meta == {
        "embedding_model": "sentence-transformers/all-MiniLM-L6-v2 (int8)",
        "embedding_dims": "384",
    }
    assert int8_vectors.keys() == float_vectors.keys() and unembedded == 0
    for seq, blob in int8_vectors.items():
        new, old = np.frombuffer(blob, np.float32), np.frombuffer(float_vectors[seq], np.float32)
        assert 0.97 < float(new @ old) < 0.99999

    async with open_services(config) as services:
        await services.vectors.attached.wait()
        found = await services.search.search(ALICE, SearchQuery(query="which hot drink does she like?"))
    assert found.mode == "hybrid" and found.note is None
    assert found.results[0].content == contents[0]


def test_doctor_says_search_is_lexical_while_memories_are_embedded_again() -> None:
    reported = DaemonStatus(
        pid=1, version="1", url="http://127.0.0.1:7077/mcp", started_at="t", state="serving", embedder="ready",
        updated_at="t", embedder_model="sentence-transformers/all-MiniLM-L6-v2 (int8)", reembedding=1200,
    )  # fmt: skip
    assert daemon_embedder(reported) == (
        "warn",
        "embedder",
        "memosd has sentence-transformers/all-MiniLM-L6-v2 (int8) loaded and is embedding every memory again for"
        " it (the model changed; about 1200 left): search is lexical until it is done",
    )
    assert daemon_embedder(msgspec.structs.replace(reported, reembedding=None))[0] == "ok"
