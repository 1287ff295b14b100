"""docs/cli.md stays complete and true: every command of the real click tree has help text and
its own section, every option is documented in that section, and the page names nothing that
does not exist."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from estafet.cli.main import cli

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
DOC = DOC_PATH.read_text(encoding="utf-8")


def walk(cmd: click.Command, path: tuple[str, ...] = ("estafet",)):  # type: ignore[no-untyped-def]
    yield path, cmd
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd)  # list_commands/get_command: the top group loads lazily
        for name in sorted(cmd.list_commands(ctx)):
            sub = cmd.get_command(ctx, name)
            assert sub is not None, f"{' '.join(path)} lists {name} but cannot load it"
            yield from walk(sub, (*path, name))


COMMANDS = {" ".join(path): cmd for path, cmd in walk(cli)}
LEAVES = {name: cmd for name, cmd in COMMANDS.items() if not isinstance(cmd, click.Group)}


def options(cmd: click.Command) -> list[str]:
    """Every spelling of every option (`--json`, `--no-mdns`, `-h` aside)."""
    out = []
    for p in cmd.params:
        if isinstance(p, click.Option):
            out += [o for o in (*p.opts, *p.secondary_opts) if o.startswith("--")]
    return out


def section(name: str) -> str:
    """The text under the heading "### `<name>`", up to the next heading of level 2 or 3."""
    m = re.search(rf"^### `{re.escape(name)}`\s*$(.*?)(?=^##)", DOC + "\n##", re.M | re.S)
    assert m, f"docs/cli.md has no section headed ### `{name}`"
    return m.group(1)


def test_the_tree_is_what_we_document() -> None:
    # a guard for the walk itself: the groups and a few commands every reader needs
    assert {"estafet central", "estafet node", "estafet result", "estafet bundle"} <= set(COMMANDS)
    assert {"estafet central init", "estafet node run", "estafet verify", "estafet demo"} <= set(
        LEAVES
    )
    assert len(LEAVES) >= 17


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help(name: str) -> None:
    cmd = COMMANDS[name]
    assert cmd.help and cmd.help.strip(), f"`{name}` has no help text"
    assert cmd.get_short_help_str(), name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_is_in_the_doc(name: str) -> None:
    assert re.search(rf"`{re.escape(name)}[` ]", DOC), f"`{name}` is not mentioned in docs/cli.md"


@pytest.mark.parametrize("name", sorted(LEAVES))
def test_every_option_is_documented_in_its_section(name: str) -> None:
    text = section(name)
    cmd = LEAVES[name]
    for opt in options(cmd):
        assert re.search(rf"`{re.escape(opt)}[` ]", text), f"{opt} of `{name}` is not documented"
        assert opt in DOC
    for p in cmd.params:
        if isinstance(p, click.Option):
            assert p.help, f"{p.opts} of `{name}` has no help text"
        else:
            assert f"`{p.human_readable_name}`" in text, f"argument {p.name} of `{name}`"
    assert "```sh" in text and f"{name}" in text.split("```sh", 1)[1], f"no example for `{name}`"


@pytest.mark.parametrize("name", sorted(LEAVES))
def test_no_documented_option_is_made_up(name: str) -> None:
    real = set(options(LEAVES[name]))
    rows = re.findall(r"^\| `(--[a-z0-9-]+)", section(name), re.M)
    assert rows, f"the section of `{name}` has no option table"
    assert set(rows) <= real, f"`{name}` documents options it does not have: {set(rows) - real}"
    assert set(rows) == real


def test_no_documented_command_is_made_up() -> None:
    headed = re.findall(r"^### `(estafet [a-z ]+)`", DOC, re.M)
    assert sorted(headed) == sorted(LEAVES)
    for words in re.findall(r"`(estafet(?: [a-z]+)+)", DOC):
        # `estafet node run --home` style mentions: the longest prefix must be a command
        parts = words.split()
        while parts and " ".join(parts) not in COMMANDS:
            parts.pop()
        assert len(parts) >= 2, f"docs/cli.md mentions `{words}`, which is no command"


def test_exit_codes_environment_and_default_home() -> None:
    for code in ("`0`", "`1`", "`2`"):
        assert f"| {code} |" in DOC
    for var in ("ESTAFET_HOME", "ESTAFET_PASSPHRASE", "ESTAFET_PASSPHRASE_FILE", "STATE_DIRECTORY"):
        assert f"`{var}`" in DOC
    assert "~/.local/state/estafet" in DOC
    assert "XDG_STATE_HOME" in DOC


def test_default_home_is_as_documented(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from estafet.relay.home import default_home

    for var in ("ESTAFET_HOME", "STATE_DIRECTORY", "XDG_STATE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_home() == tmp_path / ".local" / "state" / "estafet"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_home() == tmp_path / "xdg" / "estafet"
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/sd:{tmp_path}/other")
    assert default_home() == tmp_path / "sd"
    monkeypatch.setenv("ESTAFET_HOME", str(tmp_path / "eh"))
    assert default_home() == tmp_path / "eh"


def test_every_doc_link_target_exists() -> None:
    for target in re.findall(r"\]\(([a-z]+\.md)(?:#[^)]*)?\)", DOC):
        assert (DOC_PATH.parent / target).is_file(), target


def test_the_lazy_listing_matches_the_commands() -> None:
    """`estafet --help` lists the groups from short texts without importing them."""
    from estafet.cli.main import COMMANDS as LAZY
    from estafet.cli.main import SHORT_HELP

    assert set(SHORT_HELP) == set(LAZY)
    for name in LAZY:
        assert COMMANDS[f"estafet {name}"].name == name
