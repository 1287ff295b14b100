"""Shared CLI plumbing: the --home and passphrase options, and error translation."""

from __future__ import annotations

import functools
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from estafet.protocol.errors import EstafetError, FormError
from estafet.relay.home import default_home

F = TypeVar("F", bound=Callable[..., Any])
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def home_option(f: F) -> F:
    return click.option(
        "--home",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="State directory (default: $ESTAFET_HOME, $STATE_DIRECTORY, or "
        "~/.local/state/estafet).",
    )(f)


def resolve_home(home: Path | None) -> Path:
    return home if home is not None else default_home()


def passphrase_option(f: F) -> F:
    return click.option(
        "--passphrase-file",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        default=None,
        envvar="ESTAFET_PASSPHRASE_FILE",
        help="Read the key passphrase from this file (else $ESTAFET_PASSPHRASE, else a prompt).",
    )(f)


def root_passphrase_option(f: F) -> F:
    return click.option(
        "--root-passphrase-file",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        default=None,
        envvar="ESTAFET_ROOT_PASSPHRASE_FILE",
        help="Read the KPU root key's passphrase from this file (else $ESTAFET_ROOT_PASSPHRASE, "
        "else a prompt). It must differ from the issuer key's.",
    )(f)


def get_passphrase(
    file: Path | None,
    *,
    confirm: bool = False,
    what: str = "key",
    env_name: str = "ESTAFET_PASSPHRASE",
    option: str = "--passphrase-file",
) -> str:
    if file is not None:
        return file.read_text(encoding="utf-8").rstrip("\r\n")
    env = os.environ.get(env_name)
    if env:
        return env
    if not sys.stdin.isatty():
        raise click.ClickException(
            f"a passphrase for the {what} is needed: set {env_name} or {option}"
        )
    value: str = click.prompt(
        f"Passphrase for the {what}", hide_input=True, confirmation_prompt=confirm
    )
    return value


def get_root_passphrase(file: Path | None, *, confirm: bool = False) -> str:
    return get_passphrase(
        file,
        confirm=confirm,
        what="KPU root key",
        env_name="ESTAFET_ROOT_PASSPHRASE",
        option="--root-passphrase-file",
    )


def friendly(f: F) -> F:
    """Turn our errors (and OS errors) into one-line ClickExceptions: never a traceback."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except click.ClickException:
            raise
        except FormError as exc:
            for v in exc.violations:
                click.echo(f"  ✗ {v.rule}: {v.message}", err=True)
            raise click.ClickException(
                f"the form breaks {len(exc.violations)} rule(s); nothing was signed"
            ) from exc
        except EstafetError as exc:  # the one root of every library error
            raise click.ClickException(str(exc)) from exc
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise click.ClickException(f"{exc.strerror or exc}{where}") from exc
        except sqlite3.DatabaseError as exc:
            raise click.ClickException(
                f"the database is unusable ({exc}): is the disk full, or the file damaged? "
                "Free space, or restore the home from its backup"
            ) from exc

    return wrapper  # type: ignore[return-value]


def short(b: bytes | None, n: int = 16) -> str:
    return b.hex()[:n] if b else "-"
