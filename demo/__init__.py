"""``estafet demo``: the whole count-night journey on one machine (central, gateway, relay,
phones as separate processes on loopback), with the real Kotabaru region codes in ``data/``."""
