"""protocol/ and crypto/ do no I/O and never read the clock: proved statically and at run time.

The static half scans the source of every module (``import x`` and ``from x import y``, at any
depth, including imports inside functions). The dynamic half makes the clock, files and sockets
raise, then signs, verifies and learns a full set of objects, which must still work.
"""

from __future__ import annotations

import ast
import builtins
import datetime
import io
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from estafet.crypto.keyfile import decrypt_key, encrypt_key
from estafet.crypto.seal import seal
from estafet.crypto.trust import TrustStore
from estafet.protocol import codec
from estafet.protocol.form import check_form, parse_form
from estafet.protocol.objects import LOG_GENESIS, ReceiptBody, RevokedEntry, log_entry_hash
from tests.kit import NOW, TPS_A, World, form_json

ROOT = Path(__file__).resolve().parents[1]
PURE_PACKAGES = ("protocol", "crypto")
IO_MODULES = frozenset(
    {
        "asyncio", "socket", "sqlite3", "aiohttp", "zeroconf", "sqlite_utils", "click", "os",
        "io", "pathlib", "time", "subprocess", "threading", "select", "selectors", "urllib",
        "http", "shutil", "tempfile", "random",
        # also: other clocks, process-level I/O, and Estafet's own I/O layers
        "datetime", "multiprocessing", "signal", "logging", "importlib", "estafet.relay",
        "estafet.cli", "estafet.central", "estafet.demo", "estafet.pages",
    }
)  # fmt: skip
IO_CALLS = frozenset({"open", "print", "input", "breakpoint", "__import__", "exec", "eval"})


def pure_files() -> list[Path]:
    files = sorted(p for pkg in PURE_PACKAGES for p in (ROOT / pkg).rglob("*.py"))
    assert len(files) >= 12, files
    return files


def imported_modules(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def is_forbidden(module: str) -> bool:
    return any(module == bad or module.startswith(bad + ".") for bad in IO_MODULES)


@pytest.mark.parametrize("path", pure_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_io_imports(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    bad = sorted(m for m in imported_modules(tree) if is_forbidden(m))
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("path", pure_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_io_builtins(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    calls = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert not calls & IO_CALLS, f"{path.relative_to(ROOT)} calls {sorted(calls & IO_CALLS)}"


def test_layering() -> None:
    """protocol/ is below crypto/; only the codec knows msgpack."""
    for path in pure_files():
        mods = imported_modules(ast.parse(path.read_text(encoding="utf-8")))
        rel = path.relative_to(ROOT)
        if rel.parts[0] == "protocol":
            assert not {m for m in mods if m.startswith(("estafet.crypto", "cryptography"))}, rel
        if rel != Path("protocol/codec.py"):
            assert "msgpack" not in mods, f"{rel} imports msgpack; only protocol/codec.py may"


def test_scanner_sees_what_it_must() -> None:
    src = "import os.path\nfrom time import monotonic\ndef f():\n    import socket\n"
    mods = imported_modules(ast.parse(src))
    assert {m for m in mods if is_forbidden(m)} == {"os.path", "time", "time.monotonic", "socket"}
    assert not is_forbidden("timeit") and not is_forbidden("iolib") and not is_forbidden("secrets")


# --- at run time -------------------------------------------------------------------------------


def _refuse(*_: Any, **__: Any) -> Any:
    raise AssertionError("the pure core touched the clock, a file or a socket")


class _NoClock(datetime.datetime):
    @classmethod
    def now(cls, tz: Any = None) -> Any:
        _refuse()

    @classmethod
    def utcnow(cls) -> Any:
        _refuse()

    @classmethod
    def today(cls) -> Any:
        _refuse()


def round_trip(w: World) -> list[bytes]:
    """Certify, sign and verify one object of every kind; returns the envelopes' bytes."""
    key, cert = w.officer("purity chair")
    witness, witness_cert = w.officer("purity witness", role="witness")
    form = parse_form(form_json())
    assert check_form(form, w.manifest) == ([], [])
    result, _ = w.result(key, cert)
    endorsement = w.endorse(witness, witness_cert, result)
    revocation = w.revocation(1, RevokedEntry(None, b"\x01" * 16, "lost", NOW))
    log_hash = log_entry_hash(LOG_GENESIS, 0, result.id, "accepted", "", NOW)
    body = ReceiptBody(
        result.id, "result", TPS_A, "bupati", "accepted", "", 0, LOG_GENESIS, log_hash
    )
    receipt = seal("receipt", body, w.issuer, NOW)
    ts = TrustStore(w.root.public)
    for env in (revocation, w.issuer_cert, w.manifest_env, cert, receipt, result, endorsement):
        verified = ts.verify(env.encode(), NOW)
        ts.learn(verified)
    keyfile = encrypt_key(key, "pass phrase", n=2**10, salt=bytes(16), nonce=bytes(12))
    assert decrypt_key(keyfile, "pass phrase").id == key.id
    assert codec.decode(codec.encode({"b": [1, b"x"], "a": None})) == {"a": None, "b": [1, b"x"]}
    return [e.encode() for e in (result, endorsement, revocation, receipt, cert)] + [keyfile]


def test_sign_and_verify_without_clock_files_or_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World()  # reads the Kotabaru fixtures: done before the lid closes
    expected = round_trip(World())
    with monkeypatch.context() as m:
        for name in ("time", "time_ns", "monotonic", "monotonic_ns", "localtime", "gmtime"):
            m.setattr(time, name, _refuse)
        m.setattr(datetime, "datetime", _NoClock)
        m.setattr(builtins, "open", _refuse)
        m.setattr(io, "open", _refuse)
        m.setattr(os, "open", _refuse)
        m.setattr(socket, "socket", _refuse)
        with pytest.raises(AssertionError):
            time.time()
        with pytest.raises(AssertionError):
            datetime.datetime.now()
        with pytest.raises(AssertionError):
            open(__file__)  # noqa: SIM115
        got = round_trip(world)
    # same inputs, same bytes: nothing hidden (clock, entropy) went into any signed object
    assert got == expected
