"""The ``estafet`` entry point: assembles the command groups."""

from __future__ import annotations

import click

from .central import central
from .demo import demo
from .node import bundle, node, result, verify


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "ESTAFET"}
)
@click.version_option(package_name="estafet")
def cli() -> None:
    """Estafet: carry signed TPS election results hop by hop to the KPU, with receipts back.

    Roles: KPU runs `central`; PPK gateways, village relays and KPPS phones run `node`;
    officers and witnesses use `result`. `estafet demo` shows it all on this machine.
    """


cli.add_command(central)
cli.add_command(node)
cli.add_command(result)
cli.add_command(bundle)
cli.add_command(verify)
cli.add_command(demo)


def main() -> None:
    cli()
