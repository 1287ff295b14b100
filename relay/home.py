"""A node's home directory: config (TOML), its key file, the pinned trust anchor.

Layout::

    <home>/config.toml     listen, central, peers, scope, discovery switches, quota (mode 0600)
    <home>/node.key        the device key, passphrase-encrypted unless chosen otherwise (0600)
    <home>/trust.json      the pinned KPU root public key
    <home>/store.db        the object store (see store.py); <home>/blobs/ the photo blobs
    <home>/provision.json  optional: central URL + root fingerprint from the KPU (docs/phone.md)

The default home is ``$ESTAFET_HOME``, else ``$STATE_DIRECTORY`` (systemd), else
``$XDG_STATE_HOME/estafet`` (``~/.local/state/estafet``; also on Termux).
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from estafet.crypto.errors import CryptoError
from estafet.crypto.keyfile import decrypt_key, encrypt_key, is_encrypted, plain_key
from estafet.crypto.keys import SigningKey, key_id

from .errors import ConfigError

DEFAULT_PORT = 7420


def default_home() -> Path:
    for var in ("ESTAFET_HOME", "STATE_DIRECTORY"):
        if os.environ.get(var):
            return Path(os.environ[var].split(":")[0])
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "estafet"


def write_private(path: Path, data: bytes) -> None:
    """Write a file readable only by its owner, atomically (temp file, fsync, rename)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def parse_hostport(value: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        return value, default_port
    try:
        p = int(port)
    except ValueError as exc:
        raise ConfigError(f"bad port in {value!r}") from exc
    if not 0 <= p <= 65535:
        raise ConfigError(f"port out of range in {value!r}")
    return host.strip("[]") or "0.0.0.0", p  # noqa: S104 - the user chose to listen on all


@dataclass
class NodeConfig:
    listen: str = f"0.0.0.0:{DEFAULT_PORT}"
    central: str = ""
    peers: list[str] = field(default_factory=list)
    mdns: bool = True
    beacon: bool = True
    sweep: bool = False
    scope: str = ""
    quota_mb: int = 1024
    name: str = ""
    sync_interval: float = 5.0
    app: str = "127.0.0.1:7421"
    """The officer's web app (loopback only; empty to switch it off)."""

    def to_toml(self) -> str:
        lines = []
        for key, value in asdict(self).items():
            lines.append(f"{key} = {_toml_value(value)}")
        return (
            "# Estafet node configuration; command-line flags override these.\n"
            + "\n".join(lines)
            + "\n"
        )

    @classmethod
    def from_toml(cls, text: str) -> NodeConfig:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config.toml: {exc}") from exc
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"config.toml: unknown setting(s) {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"config.toml: {exc}") from exc


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


class Home:
    """Paths and the small files of one node's home."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def config_file(self) -> Path:
        return self.path / "config.toml"

    @property
    def key_file(self) -> Path:
        return self.path / "node.key"

    @property
    def trust_file(self) -> Path:
        return self.path / "trust.json"

    def exists(self) -> bool:
        return self.config_file.exists()

    def load_config(self) -> NodeConfig:
        try:
            return NodeConfig.from_toml(self.config_file.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{self.path} is not an Estafet node home: run `node init`") from exc

    def save_config(self, config: NodeConfig) -> None:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(self.config_file, config.to_toml().encode())

    def create_key(self, passphrase: str | None) -> SigningKey:
        key = SigningKey.generate()
        data = encrypt_key(key, passphrase) if passphrase else plain_key(key)
        write_private(self.key_file, data)
        return key

    def key_is_encrypted(self) -> bool:
        try:
            return is_encrypted(self.key_file.read_bytes())
        except FileNotFoundError as exc:
            raise ConfigError(f"no key in {self.path}: run `node init`") from exc
        except CryptoError as exc:
            raise ConfigError(str(exc)) from exc

    def load_key(self, passphrase: str | None) -> SigningKey:
        try:
            return decrypt_key(self.key_file.read_bytes(), passphrase)
        except FileNotFoundError as exc:
            raise ConfigError(f"no key in {self.path}: run `node init`") from exc
        except CryptoError as exc:
            raise ConfigError(str(exc)) from exc

    def save_trust(self, root_public: bytes, name: str = "") -> None:
        doc = {"root_public": root_public.hex(), "root_id": key_id(root_public).hex(), "name": name}
        write_private(self.trust_file, json.dumps(doc, indent=2).encode())

    def load_trust(self) -> bytes | None:
        try:
            return read_trust_file(self.trust_file)
        except FileNotFoundError:
            return None


def read_trust_file(path: Path) -> bytes:
    """Read a trust anchor (``central trust`` output); raises ConfigError if unusable."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        root = bytes.fromhex(doc["root_public"])
    except FileNotFoundError:
        raise
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise ConfigError(f"{path}: not an Estafet trust anchor ({exc})") from exc
    if len(root) != 32:
        raise ConfigError(f"{path}: root_public must be 32 bytes")
    if "root_id" in doc and doc["root_id"] != key_id(root).hex():
        raise ConfigError(f"{path}: root_id does not match root_public")
    return root
