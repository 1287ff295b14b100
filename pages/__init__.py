"""HTML pages rendered from status views: the KPU dashboard, the TPS page and the PPK recap.

Rendering only: functions from plain dicts (the JSON views) to escaped HTML. No sockets, no
database, no clock; the servers in :mod:`estafet.central` and :mod:`estafet.relay` call them.
"""
