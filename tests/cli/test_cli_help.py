"""``--help`` of the command and of each subcommand explains the defaults."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_top_level_help_lists_every_subcommand(cli):
    result = cli("--help")
    assert result.returncode == 0
    for command in (
        "mkfs",
        "mount",
        "umount",
        "status",
        "stats",
        "systemd-unit",
        "log",
        "gc",
        "blocks",
        "find",
        "index",
        "consumer",
        "provenance",
    ):
        assert command in result.stdout
    assert str(cli.data_dir) in result.stdout


@pytest.mark.parametrize(
    "command",
    [
        ["mkfs"],
        ["mount"],
        ["umount"],
        ["status"],
        ["stats"],
        ["systemd-unit"],
        ["log"],
        ["gc"],
        ["blocks"],
        ["blocks", "add"],
        ["find"],
        ["index"],
        ["index", "enable"],
        ["index", "check"],
        ["consumer"],
        ["consumer", "list"],
        ["consumer", "remove"],
        ["provenance"],
    ],
)
def test_each_subcommand_has_help(cli, command):
    result = cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: fusefs {' '.join(command)}")
    assert result.stderr == ""


def test_mkfs_help_gives_the_defaults(cli):
    text = " ".join(cli("mkfs", "--help").stdout.split())
    assert f"(default: {cli.default_url})" in text
    assert f"(default: {cli.data_dir}/blocks/NAME, created)" in text
    assert "(default: 64 KiB" in text
    assert "(default: 4 MiB)" in text
    assert "(default: default)" in text
    assert "--search-index" in text and "creates then run at about 0.9x" in text
    assert "'fusefs index enable'" in text


def test_mount_help_gives_the_defaults_and_options(cli):
    text = " ".join(cli("mount", "--help").stdout.split())
    assert f"(default: {cli.default_url})" in text
    assert f"{cli.data_dir}/NAME.log" in text
    for option in ("ro", "allow_other", "strict"):
        assert f"{option}:" in text
    assert "created on first mount" in text


def test_help_changes_nothing(cli):
    cli("mount", "--help")
    assert not cli.data_dir.exists()


def test_python_m_and_entry_point_are_the_same_main():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["fusefs"] == "fusefs.cli:main"


def test_commands_other_than_mount_load_neither_fuse_nor_trio(cli):
    """Loading pyfuse3 and trio takes longer than most commands take to run: only mount needs them."""
    probe = "import sys, fusefs.cli; print(sorted({'pyfuse3', 'trio', 'tqdm'} & set(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe],
        env=cli.env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"
