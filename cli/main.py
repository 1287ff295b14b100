"""The ``estafet`` entry point: assembles the command groups.

Groups are imported only when used (``LazyGroup``): ``estafet node run`` on a phone should not
pay for importing the central server's dashboard, and start-up time is a measured figure
(BENCHMARKS.md, figure 8).
"""

from __future__ import annotations

import importlib
from typing import Any

import click

COMMANDS = {
    "central": ("estafet.cli.central", "central"),
    "node": ("estafet.cli.node", "node"),
    "result": ("estafet.cli.node", "result"),
    "bundle": ("estafet.cli.node", "bundle"),
    "verify": ("estafet.cli.node", "verify"),
    "witness": ("estafet.cli.trail", "witness"),
    "ppk": ("estafet.cli.trail", "ppk"),
    "demo": ("estafet.cli.demo", "demo"),
    "app": ("estafet.cli.app", "app"),
}
SHORT_HELP = {
    "central": "Run the KPU central server: keys, enrollment codes, ingest, tally, dashboard.",
    "node": "Run and inspect a relay node (phone, village relay, PPK gateway).",
    "result": "Sign and endorse TPS results (KPPS officers, witnesses).",
    "bundle": "Carry objects on a USB stick or SD card where no network reaches.",
    "verify": "Check an exported object (or a bundle folder) offline.",
    "witness": "Witnesses and the PTPS at the TPS: show a key, admit it, object to a result.",
    "ppk": "The PPK plenary on a kecamatan gateway: corrections and the D.Hasil, offline.",
    "app": "Open the officer's phone app (served by `estafet node run`) in the browser.",
    "demo": "Central, gateway, relay and KPPS phones on loopback: results hop, receipts return.",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module = importlib.import_module(target[0])
        command: click.Command = getattr(module, target[1])
        return command

    def format_commands(self, ctx: click.Context, formatter: Any) -> None:
        # the listing in --help uses the short texts, so it imports nothing
        with formatter.section("Commands"):
            formatter.write_dl(sorted(SHORT_HELP.items()))


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "ESTAFET"},
)
@click.version_option(package_name="estafet")
def cli() -> None:
    """Estafet: carry signed TPS election results hop by hop to the KPU, with receipts back.

    Roles: KPU runs `central`; PPK gateways, village relays and KPPS phones run `node`;
    officers and witnesses use `result`. `estafet demo` shows it all on this machine.
    """


def main() -> None:
    cli()
