"""The exception tree of :mod:`estafet.relay`.

::

    RelayError                    anything the node refuses or cannot do (under EstafetError)
    ├── StoreError                the store cannot do what was asked
    │   ├── StoreFull             over quota: photos are refused, small objects still flow
    │   └── BlobMismatch          bytes did not hash to the name they were offered under
    ├── PeerError                 a peer misbehaved or could not be reached (carries ``peer``)
    ├── PeerFull                  a peer has no room for a photo (client.py)
    ├── WireError                 a /v1/ body that is not what the API promises (wire.py)
    ├── ConfigError               a home directory, config or key file is unusable
    └── EnrollRefused             the central server refused an enrollment (carries ``reason``)
"""

from __future__ import annotations

from estafet.protocol.errors import EstafetError


class RelayError(EstafetError):
    """Root of every error raised by :mod:`estafet.relay`."""


class StoreError(RelayError):
    pass


class StoreFull(StoreError):
    pass


class BlobMismatch(StoreError):
    pass


class PeerError(RelayError):
    def __init__(self, peer: str, message: str) -> None:
        self.peer = peer
        super().__init__(f"{peer}: {message}")


class ConfigError(RelayError):
    pass


class EnrollRefused(RelayError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
