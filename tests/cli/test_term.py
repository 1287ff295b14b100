"""Terminal output of the status commands: bars and colour only on a terminal that wants them
(NO_COLOR, TERM=dumb and pipes get the plain text scripts parse), and the bars say the truth."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from click.testing import CliRunner

from estafet.cli import term
from estafet.cli.main import cli
from tests.cli.clikit import PASS, invoke, ok

from .conftest import CentralHome

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_fancy_only_on_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert term.fancy(Tty()) and not term.fancy(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not term.fancy(Tty())
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert not term.fancy(Tty())


@pytest.mark.parametrize(
    ("done", "total", "full"), [(0, 10, 0), (5, 10, 12), (10, 10, 24), (3, 0, 0)]
)
def test_bar_length_is_the_fraction(done: int, total: int, full: int) -> None:
    text = ANSI.sub("", term.bar(done, total, 24))
    assert len(text) == 24 and text.count("█") == full


def test_central_status_plain_when_piped_fancy_on_a_terminal(
    central_home: CentralHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = ok(invoke("central", "status", "--home", central_home.home))
    assert "█" not in plain and not ANSI.search(plain) and "TPS accepted" in plain
    monkeypatch.setattr(term, "fancy", lambda stream=None: True)
    env = {"ESTAFET_PASSPHRASE": PASS}
    res: Any = CliRunner().invoke(cli, ["central", "status", "--home", str(central_home.home)],
                                  env=env, color=True)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert ANSI.search(res.output) and "·" * 24 in ANSI.sub("", res.output)  # empty bars
    assert "0.0%" in res.output and "Hampang" in res.output
