"""``estafet demo``: run the whole journey on this machine (see demo/run.py)."""

from __future__ import annotations

from pathlib import Path

import click

from estafet.demo.run import PACE, run_demo


@click.command("demo")
@click.option(
    "--tps",
    "n_tps",
    type=click.IntRange(1, 70),
    default=5,
    show_default=True,
    help="How many no-signal TPS (phones) take part.",
)
@click.option(
    "--pace",
    type=click.Choice(sorted(PACE)),
    default="normal",
    show_default=True,
    help="Faster or slower pauses between steps.",
)
@click.option(
    "--keep",
    is_flag=True,
    help="Keep the central server (dashboard) and the first phone (its app) running.",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep every home and log here (default: a temporary folder, removed).",
)
def demo(n_tps: int, pace: str, keep: bool, workdir: Path | None) -> None:
    """Central server, gateway, relay and KPPS phones on loopback: results hop, receipts return."""
    code = run_demo(n_tps, pace, keep, workdir, lambda m: click.echo(f"• {m}"))
    raise SystemExit(code)
