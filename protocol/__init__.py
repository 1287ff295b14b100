"""Estafet's wire format and election rules: pure, no I/O, no clock.

``protocol`` owns the bytes that travel (canonical msgpack in :mod:`.codec`, the signed-object
envelope and its contents in :mod:`.objects`), the C.Hasil result form and its arithmetic rules
(:mod:`.form`), the election manifest (:mod:`.manifest`), photo checks (:mod:`.photos`) and the
set-reconciliation state machine (:mod:`.reconcile`). Nothing here opens a socket or a file or
reads the clock: callers pass ``now`` in.
"""
