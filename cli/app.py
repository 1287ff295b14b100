"""``estafet app``: print the officer's app URL and open it in the phone's browser."""

from __future__ import annotations

import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import click

from estafet.relay.home import Home, parse_hostport

from .common import friendly, home_option, resolve_home

OPEN_TIMEOUT = 10


def app_url(listen: str) -> str:
    host, port = parse_hostport(listen, 7421)
    host = "127.0.0.1" if host in ("0.0.0.0", "localhost") else host  # noqa: S104
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


@click.command("app")
@home_option
@click.option("--no-open", is_flag=True, help="Only print the URL.")
@friendly
def app(home: Path | None, no_open: bool) -> None:
    """Print the app's URL and open it (termux-open-url on a phone). The app is served by
    `estafet node run`, which must be running."""
    h = Home(resolve_home(home))
    cfg = h.load_config()
    if not cfg.app:
        raise click.ClickException('the app is switched off (app = "" in config.toml)')
    url = app_url(cfg.app)
    click.echo(url)
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 - our loopback URL
            resp.read(1)
    except (urllib.error.URLError, OSError):
        click.secho(
            "the node is not running: start it with `estafet node run` (or `sv up estafet`)",
            fg="yellow",
            err=True,
        )
    opener = shutil.which("termux-open-url")
    if opener and not no_open:
        subprocess.run([opener, url], check=False, timeout=OPEN_TIMEOUT)  # noqa: S603
