"""Keys, signatures and trust for Estafet: pure, bytes in and bytes out, ``now`` passed in.

:mod:`.keys` wraps Ed25519 and derives key ids; :mod:`.seal` builds signed envelopes;
:mod:`.keyfile` encrypts private keys with a passphrase; :mod:`.trust` verifies an object's
signature, certificate chain (to the pinned KPU root), role, scope, validity window, revocation
and manifest rules, and answers with a :class:`~.trust.Verified` object or a
:class:`~.errors.VerifyError` naming why.
"""
