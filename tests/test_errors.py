"""One exception root: every error class the library defines derives from EstafetError, no two
share a name, and the CLI turns any of them into one line."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import click
import pytest

import estafet
from estafet.central.errors import LogError
from estafet.cli.common import friendly
from estafet.protocol.errors import EstafetError
from estafet.relay.wire import WireError


def library_exceptions() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(estafet.__path__, "estafet."):
        if info.name.endswith("__main__"):
            continue  # runs the CLI when imported
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__.startswith("estafet."):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return list(found.values())


def test_every_library_error_derives_from_the_one_root_and_names_are_unique() -> None:
    errors = library_exceptions()
    assert len(errors) > 15
    strays = [e.__qualname__ for e in errors if not issubclass(e, EstafetError)]
    assert strays == []
    names = [e.__name__ for e in errors]
    assert sorted({n for n in names if names.count(n) > 1}) == []


@pytest.mark.parametrize(
    "exc", [LogError(7, "hash does not match the entry"), WireError("body must be a map")]
)
def test_the_cli_prints_one_line_for_any_library_error(exc: EstafetError) -> None:
    def boom() -> None:
        raise exc

    with pytest.raises(click.ClickException) as info:
        friendly(boom)()
    message = info.value.format_message()
    assert message == str(exc) and "\n" not in message
