"""What a user installs: a distribution of our own name, a licence, versions, and systemd units that start."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from memos_cli.service_commands import unit_template
from tests.conftest import REPO, free_port, isolated_env, memos_command, memosd_command, write_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def run(command: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, env=isolated_env(home), cwd=REPO, timeout=60
    )


def test_the_distribution_is_ours_and_keeps_the_commands() -> None:
    """`memos` on PyPI is an unrelated project; `memosd` was free (checked 2026-12-01)."""
    assert PROJECT["name"] == "memosd"
    assert set(PROJECT["scripts"]) == {
        "memos",
        "memosd",
    }
    assert not {"pytest", "ruff", "mypy"} & {
        dep.split(">")[0].split("=")[0] for dep in PROJECT["dependencies"]
    }


def test_the_licence_is_the_mit_licence_pyproject_names() -> None:
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert PROJECT["license"] == {"text": "MIT"}
    assert text.startswith("MIT License") and "Copyright (c) 2026 the memos authors" in text


@pytest.mark.parametrize("command", [memos_command, memosd_command])
def test_both_commands_print_their_version(tmp_path: Path, command: object) -> None:
    result = run(command("--version"), tmp_path)  # type: ignore[operator]
    assert result.returncode == 0, result.stderr
    name = "memos" if command is memos_command else "memosd"
    assert result.stdout.strip() == f"{name} {PROJECT['version']}"


def system_unit(tmp_path: Path, *flags: str) -> str:
    """The system unit for a venv under tmp_path/opt, whose memosd is the real one next to this Python."""
    prefix = tmp_path / "opt"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "memosd").symlink_to(Path(sys.executable).parent / "memosd")
    result = run(
        memos_command(*flags, "install-service", "--system", "--print", "--prefix", str(prefix)), tmp_path
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_system_unit_runs_the_venv_it_made_with_the_system_config(tmp_path: Path) -> None:
    mine = write_config(tmp_path, port=free_port(), model="none")
    text = system_unit(tmp_path, "--config", str(mine))
    exec_start = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    assert exec_start == [f"ExecStart={tmp_path}/opt/bin/memosd --config /etc/memos/memos.toml"]
    assert str(mine) not in text  # the caller's config is not the service's
    assert "ProtectHome=yes" in text and "User=memos" in text
    assert "Documentation=" not in text and "@" not in text.replace("@system-service", "")
    comments = [line for line in text.splitlines() if line.startswith("#")]
    template = [line for line in unit_template("system").splitlines() if line.startswith("#")]
    assert comments == template  # filling in the paths leaves the comments as written


def test_the_user_unit_runs_this_memosd_with_the_callers_config(tmp_path: Path) -> None:
    mine = write_config(tmp_path, port=free_port(), model="none")
    unit = tmp_path / "user.service"
    result = run(memos_command("--config", str(mine), "install-service", "--target", str(unit)), tmp_path)
    assert result.returncode == 0 and f"wrote {unit}" in result.stdout
    text = unit.read_text()
    memosd = shutil.which("memosd", path=str(Path(sys.executable).parent))
    assert memosd is not None
    assert f"ExecStart={Path(memosd).resolve()} --config {mine}" in text.splitlines()
    assert "Documentation=" not in text


def test_a_system_install_into_a_home_directory_is_refused_before_anything_is_done(tmp_path: Path) -> None:
    unit = tmp_path / "memosd.service"
    result = run(
        memos_command(
            "install-service", "--system", "--prefix", "/home/someone/memos", "--target", str(unit)
        ),
        tmp_path,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("memos: --prefix /home/someone/memos is under a home directory")
    assert not unit.exists() and not Path("/home/someone/memos").exists()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("kind", ["user", "system"])
def test_the_units_pass_systemd_analyze_verify(tmp_path: Path, kind: str) -> None:
    unit = tmp_path / "memosd.service"
    if kind == "system":
        unit.write_text(system_unit(tmp_path))
    else:
        result = run(memos_command("install-service", "--target", str(unit)), tmp_path)
        assert result.returncode == 0, result.stderr
    text = unit.read_text()
    assert "Type=notify" in text and "WatchdogSec=" in text and "@MEMOSD@" not in text
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert verify.returncode == 0, verify.stderr
