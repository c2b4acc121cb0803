"""The configuration: strict, typed, and every error names the file, the key and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon import Config, ConfigError, load_config
from daemon.config import parse_config

REPO = Path(__file__).resolve().parents[1]


def test_the_shipped_memos_toml_spells_out_the_built_in_defaults() -> None:
    shipped = parse_config((REPO / "memos.toml").read_text(encoding="utf-8"), "memos.toml")
    assert shipped == Config()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[server]\nprot = 1\n",
            "cfg.toml: [server] prot: unknown key (memos.toml in the repository lists every key)",
        ),
        ('[server]\nport = "80"\n', "cfg.toml: [server] port: Expected `int`, got `str`"),
        ("[server]\nport = 70000\n", "cfg.toml: [server] port: Expected `int` <= 65535"),
        ("[limits]\nmax_batch = 0\n", "cfg.toml: [limits] max_batch: Expected `int` >= 1"),
        ('[log]\nlevel = "loud"\n', "cfg.toml: [log] level: Invalid enum value 'loud'"),
        ("[nonsense]\n", "cfg.toml: nonsense: unknown key (memos.toml in the repository lists every key)"),
        (
            "[search]\nrrf_k = 60\n",
            'cfg.toml: [search] rrf_k: unknown key: it moved to [search.rrf] k (with fusion = "rrf")',
        ),
        (
            "[server\n",
            "cfg.toml: not valid TOML: Expected ']' at the end of a table declaration (at line 1, column 8)",
        ),
    ],
)
def test_a_bad_config_is_refused_with_file_key_and_expectation(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "cfg.toml")
    assert str(caught.value) == message


def test_explicit_path_beats_the_environment_which_beats_the_user_file(tmp_path: Path) -> None:
    explicit, from_env = tmp_path / "a.toml", tmp_path / "b.toml"
    explicit.write_text("[server]\nport = 1111\n")
    from_env.write_text("[server]\nport = 2222\n")
    user = tmp_path / "xdg" / "memos" / "memos.toml"
    user.parent.mkdir(parents=True)
    user.write_text("[server]\nport = 3333\n")
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "MEMOS_CONFIG": str(from_env)}
    assert load_config(explicit, env).server.port == 1111
    assert load_config(None, env).server.port == 2222
    assert load_config(None, {k: v for k, v in env.items() if k != "MEMOS_CONFIG"}).server.port == 3333


def test_without_a_file_data_goes_under_the_xdg_data_dir(tmp_path: Path) -> None:
    config = load_config(None, {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")})
    assert config.source == "defaults"
    assert config.database_path == tmp_path / "data" / "memos" / "memos.db"


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "memos.toml"
    path.write_text('[storage]\npath = "db/m.db"\n[embedder]\nmodel_path = "../model"\n')
    config = load_config(path, {"HOME": str(tmp_path)})
    assert config.database_path == tmp_path / "conf" / "db" / "m.db"
    assert config.embedder.model_path == str(tmp_path / "model")


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read the configuration file"):
        load_config(tmp_path / "nope.toml", {"HOME": str(tmp_path)})
