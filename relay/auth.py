"""Peer authentication: a signed challenge handshake that gives a short-lived session token.

Theory of operation (issue 11, item 2; why this and not mutual TLS: ``docs/security.md``)
--------------------------------------------------------------------------------------------
::

    client                                            server
    POST /v1/hello {"nonce": n}                  ->
                                                 <-   {"challenge": ch, "cert": server cert,
                                                       "sig": server's signature of
                                                       HELLO | ch | n}
    POST /v1/auth {"challenge": ch, "cert": c,
                   "sig": signature of AUTH | ch | server key id}  ->
                                                 <-   {"token": t, "ttl": seconds}
    every later request: header X-Estafet-Auth: hex(t)

The server keeps no per-handshake state: a challenge is ``expiry | random | mac`` and a token
``expiry | key id | mac``, both MACed with a secret that lives only in the server's memory, over
the caller's IP address too. So a challenge or token is worthless from another address, a
restart invalidates every token (peers just shake hands again), and a flood of hellos costs the
server one HMAC each. ``/v1/auth`` costs a certificate-chain check and a signature check; it is
limited per address (:class:`Budget`). The certificate must chain to the pinned root, be inside
its window and not be revoked; the key id the token names is the one the peer table, uploads and
partial photos are keyed by. ``X-Estafet-Node`` is no longer believed.

The client checks the server's signature over its own nonce, so after one round trip each side
knows the other's enrolled key: a beacon or mDNS advert only proposes an address.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from estafet.crypto.errors import VerifyError
from estafet.crypto.keys import SigningKey, key_id, verify_signature
from estafet.crypto.trust import TrustStore
from estafet.protocol.objects import CertificateBody

from .errors import RelayError

HELLO = b"estafet/hello/v1\x00"
AUTH = b"estafet/auth/v1\x00"
CHALLENGE_TTL = 60
TOKEN_TTL = 600
HEADER = "X-Estafet-Auth"
_MAC = 16
_KEY_ID = 16


class AuthError(RelayError):
    """A handshake or token that does not prove an enrolled, unrevoked key (answered 401/403)."""


@dataclass(frozen=True, slots=True)
class Proven:
    """A peer key proven by a handshake: its key id (hex), role and scope."""

    key: str
    role: str
    scope: str


def check_certificate(trust: TrustStore, raw: bytes, now: int) -> CertificateBody:
    """The certificate ``raw``, if it chains to the pinned root, is inside its window at ``now``
    and its subject is not revoked. Blocking; runs on the store's writer thread (the trust store
    is only ever touched by one thread)."""
    try:
        v = trust.verify(raw, now)
    except VerifyError as exc:
        raise AuthError(f"certificate refused: {exc}") from exc
    body = v.envelope.body
    if not isinstance(body, CertificateBody):
        raise AuthError("not a certificate")
    if not body.not_before - 86_400 <= now <= body.not_after:
        raise AuthError("certificate outside its validity window")
    revocation = trust.revocation
    if revocation is not None:
        entry = revocation.revokes(body.serial, key_id(body.subject))
        if entry is not None and entry.covers(now):
            raise AuthError("certificate revoked")
    return body


class Gate:
    """The server side: challenges and tokens for one node process (the secret never leaves)."""

    def __init__(self, key: SigningKey, clock: Callable[[], float] = time.time) -> None:
        self.key = key
        self.clock = clock
        self._secret = os.urandom(32)

    def _mac(self, *parts: bytes) -> bytes:
        return hmac.new(self._secret, b"\x00".join(parts), hashlib.sha256).digest()[:_MAC]

    def challenge(self, remote: str, nonce: bytes) -> tuple[bytes, bytes]:
        """A fresh challenge for ``remote``, and our signature of it with the client's nonce."""
        head = struct.pack(">Q", int(self.clock()) + CHALLENGE_TTL) + os.urandom(16)
        ch = head + self._mac(b"ch", head, remote.encode())
        return ch, self.key.sign(HELLO + ch + nonce)

    def check_challenge(self, remote: str, ch: bytes) -> None:
        if len(ch) != 24 + _MAC:
            raise AuthError("malformed challenge")
        head, mac = ch[:24], ch[24:]
        if not hmac.compare_digest(mac, self._mac(b"ch", head, remote.encode())):
            raise AuthError("challenge not issued to this address")
        if struct.unpack(">Q", head[:8])[0] < self.clock():
            raise AuthError("challenge expired")

    def token(self, remote: str, key: bytes) -> bytes:
        head = struct.pack(">Q", int(self.clock()) + TOKEN_TTL) + key
        return head + self._mac(b"tok", head, remote.encode())

    def bearer(self, remote: str | None, header: str) -> str | None:
        """The key id (hex) a token from ``remote`` proves, or None."""
        try:
            tok = bytes.fromhex(header[: 2 * (8 + _KEY_ID + _MAC)])
        except ValueError:
            return None
        if len(tok) != 8 + _KEY_ID + _MAC or remote is None:
            return None
        head, mac = tok[: 8 + _KEY_ID], tok[8 + _KEY_ID :]
        if not hmac.compare_digest(mac, self._mac(b"tok", head, remote.encode())):
            return None
        if struct.unpack(">Q", head[:8])[0] < self.clock():
            return None
        return head[8:].hex()


def client_proof(key: SigningKey, ch: bytes, server_key: bytes) -> bytes:
    """Our signature for ``/v1/auth``: bound to the challenge and to the server's key id."""
    return key.sign(AUTH + ch + server_key)


def check_client_proof(body: CertificateBody, ch: bytes, server_key: bytes, sig: bytes) -> None:
    if not verify_signature(body.subject, AUTH + ch + server_key, sig):
        raise AuthError("signature over the challenge does not verify")


def check_server_proof(body: CertificateBody, ch: bytes, nonce: bytes, sig: bytes) -> None:
    if not verify_signature(body.subject, HELLO + ch + nonce, sig):
        raise AuthError("the peer's signature over our nonce does not verify")


class Budget:
    """At most ``limit`` events per ``window`` seconds per key (an address, a peer); bounded
    memory (the table is cleared when it holds ``max_keys``)."""

    def __init__(
        self, limit: int, window: float, clock: Callable[[], float], max_keys: int = 4096
    ) -> None:
        self.limit, self.window, self.clock, self.max_keys = limit, window, clock, max_keys
        self._seen: dict[str, tuple[float, int]] = {}

    def spend(self, key: str, cost: int = 1) -> bool:
        now = self.clock()
        start, used = self._seen.get(key, (now, 0))
        if now - start >= self.window:
            start, used = now, 0
        if used + cost > self.limit:
            return False
        if len(self._seen) >= self.max_keys and key not in self._seen:
            self._seen.clear()
        self._seen[key] = (start, used + cost)
        return True

    def left(self, key: str) -> int:
        """Events ``key`` may still spend in its current window."""
        start, used = self._seen.get(key, (0.0, 0))
        return self.limit if self.clock() - start >= self.window else self.limit - used

    def renewed_in(self, key: str) -> float:
        """Seconds until ``key``'s window ends (0 when it has none running)."""
        start, _ = self._seen.get(key, (0.0, 0))
        return max(0.0, start + self.window - self.clock())
