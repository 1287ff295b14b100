"""Estafet's I/O layer: the store, the peer API, sync sessions, discovery, the node daemon and
the central server role. Everything that touches disks, sockets, SQLite, asyncio or the clock
lives here, on top of the pure :mod:`estafet.protocol` and :mod:`estafet.crypto`.
"""
