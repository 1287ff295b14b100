"""Shared CLI plumbing: the --home and passphrase options, and error translation."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from estafet.crypto.errors import CryptoError
from estafet.protocol.errors import FormError, ProtocolError
from estafet.relay.errors import RelayError
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


def get_passphrase(file: Path | None, *, confirm: bool = False, what: str = "key") -> str:
    if file is not None:
        return file.read_text(encoding="utf-8").rstrip("\r\n")
    env = os.environ.get("ESTAFET_PASSPHRASE")
    if env:
        return env
    if not sys.stdin.isatty():
        raise click.ClickException(
            f"a passphrase for the {what} is needed: set ESTAFET_PASSPHRASE or --passphrase-file"
        )
    value: str = click.prompt(
        f"Passphrase for the {what}", hide_input=True, confirmation_prompt=confirm
    )
    return value


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
        except (RelayError, ProtocolError, CryptoError) as exc:
            raise click.ClickException(str(exc)) from exc
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise click.ClickException(f"{exc.strerror or exc}{where}") from exc
        except Exception as exc:
            # the central server's errors: imported here so a phone never loads that package
            from estafet.app.errors import AppError
            from estafet.central.errors import CentralError

            if isinstance(exc, CentralError | AppError):
                raise click.ClickException(str(exc)) from exc
            raise

    return wrapper  # type: ignore[return-value]


def short(b: bytes | None, n: int = 16) -> str:
    return b.hex()[:n] if b else "-"
