"""Helpers for the CLI tests: run `estafet` in-process (CliRunner) or as real processes on
loopback, wait for them, and write forms and photos."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from estafet.cli.main import cli
from estafet.demo.run import data_dir
from tests.kit import form_json, photo_bytes

PASS = "cli-test-passphrase"
ROOT_PASS = "cli-test-root-passphrase"
MANIFEST = data_dir() / "elections.toml"
N_TPS = 551  # TPS rows in the Kotabaru manifest


def estafet_exe() -> str:
    """The `estafet` console script of this venv (what a person types)."""
    exe = Path(sys.executable).parent / "estafet"
    if exe.exists():
        return str(exe)
    found = shutil.which("estafet")
    if found is None:
        pytest.fail("the `estafet` console script is not installed next to this Python")
    return found


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for subprocesses: ours, minus any home or passphrase of the developer's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ESTAFET_HOME", "ESTAFET_PASSPHRASE", "ESTAFET_PASSPHRASE_FILE")
    }
    env.update(
        {"ESTAFET_PASSPHRASE": PASS, "ESTAFET_ROOT_PASSPHRASE": ROOT_PASS, "PYTHONUNBUFFERED": "1"}
    )
    env.update(extra)
    return env


def invoke(*args: str | Path, env: dict[str, str | None] | None = None) -> Result:
    """Run `estafet ARGS` in-process with the test passphrase in the environment."""
    base: dict[str, str | None] = {
        "ESTAFET_PASSPHRASE": PASS,
        "ESTAFET_ROOT_PASSPHRASE": ROOT_PASS,
        "ESTAFET_PASSPHRASE_FILE": None,
        "ESTAFET_ROOT_PASSPHRASE_FILE": None,
        "ESTAFET_HOME": None,
    }
    return CliRunner().invoke(
        cli, [str(a) for a in args], env={**base, **(env or {})}, prog_name="estafet"
    )


def ok(res: Result) -> str:
    assert res.exit_code == 0, f"exit {res.exit_code}: {res.output}\n{res.exception!r}"
    assert "Traceback" not in res.output
    return res.stdout


def refused(res: Result, *needles: str, code: int = 1) -> str:
    """The user's mistake is refused: exit ``code``, one `Error:` line, never a traceback."""
    out = res.output
    assert res.exit_code == code, f"exit {res.exit_code} (wanted {code}): {out}"
    assert "Traceback" not in out
    # SystemExit is how click exits; any other exception escaped the error translation
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    errors = [ln for ln in out.splitlines() if ln.startswith("Error: ")]
    assert len(errors) == 1, out
    assert len(errors[0]) < 300, errors[0]
    for n in needles:
        assert n in out, f"{n!r} not in {out!r}"
    return errors[0]


def refused_proc(done: subprocess.CompletedProcess[str], *needles: str, code: int = 1) -> str:
    out = done.stdout + done.stderr
    assert done.returncode == code, f"exit {done.returncode} (wanted {code}): {out}"
    assert "Traceback" not in out
    errors = [ln for ln in out.splitlines() if ln.startswith("Error: ")]
    assert len(errors) == 1, out
    for n in needles:
        assert n in out, f"{n!r} not in {out!r}"
    return errors[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str, timeout: float = 5) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # loopback only
        return json.load(r)


@dataclass
class Proc:
    """A long-running `estafet` process with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 10) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


def spawn(cmd: Sequence[str | Path], log: Path, env: dict[str, str]) -> Proc:
    fh = log.open("ab")
    try:
        popen = subprocess.Popen([str(c) for c in cmd], env=env, stdout=fh, stderr=fh)
    finally:
        fh.close()
    return Proc(log.stem, popen, log)


def wait_http(proc: Proc, url: str, timeout: float = 20, fetch: Any = get_json) -> Any:
    """Poll ``url`` until ``fetch`` (default: JSON) answers; fail early (with the log) if the
    process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            pytest.fail(f"{proc.name} exited {proc.popen.returncode}:\n{proc.output()}")
        try:
            return fetch(url, timeout=2)
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"{proc.name} did not answer {url} in {timeout}s:\n{proc.output()}")


def wait_until(what: str, cond: Any, timeout: float, procs: Sequence[Proc] = ()) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    logs = "\n".join(f"--- {p.name}\n{p.output()[-3000:]}" for p in procs)
    pytest.fail(f"timed out after {timeout}s waiting for {what}\n{logs}")


def codes(home: Path, role: str, *args: str) -> list[dict[str, str]]:
    out = ok(invoke("central", "codes", "--home", home, "--role", role, *args))
    return [json.loads(line) for line in out.splitlines()]


def write_form(path: Path, **over: Any) -> Path:
    path.write_text(json.dumps(form_json(**over)), encoding="utf-8")
    return path


def write_photos(folder: Path, tag: str) -> list[str]:
    """Three sheet photos as `--photo` arguments."""
    args = []
    for i in (1, 2, 3):
        f = folder / f"{tag}-sheet{i}.jpg"
        f.write_bytes(photo_bytes(f"{tag}-{i}"))
        args += ["--photo", str(f)]
    return args


@dataclass
class CentralHome:
    home: Path
    trust: Path


@dataclass
class CentralServer:
    url: str
    proc: Proc
