"""``estafet witness ...`` and ``estafet ppk ...``: the paper trail from the command line (thin
click over :mod:`estafet.relay.plenary`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from estafet.protocol.errors import ProtocolError
from estafet.protocol.trail import key_code, parse_key_code
from estafet.relay import plenary
from estafet.relay.home import Home
from estafet.relay.local import read_photo
from estafet.relay.store import Store

from .common import friendly, home_option, passphrase_option, resolve_home
from .node import _open_key, _root

PHOTO = click.Path(dir_okay=False, exists=True, path_type=Path)


def _hex_id(value: str, hint: str) -> bytes:
    try:
        out = bytes.fromhex(value)
    except ValueError:
        out = b""
    if len(out) != 32:
        raise click.BadParameter("must be 64 hex digits", param_hint=hint)
    return out


def _run(home: Path | None, passphrase_file: Path | None, act: Any) -> None:
    h = Home(resolve_home(home))
    key = _open_key(h, passphrase_file)
    root = _root(h)
    now = int(time.time())
    store = Store.open(h.path, now)
    try:
        env = act(store, key, root, now)
    finally:
        store.close()
    click.echo(env.id.hex())


@click.group()
def witness() -> None:
    """Witnesses and the PTPS at the TPS: show a key, admit it (chair), object to a result."""


@witness.command("key")
@home_option
@passphrase_option
@friendly
def witness_key(home: Path | None, passphrase_file: Path | None) -> None:
    """Show this device's public key as the code the KPPS chair types to admit it."""
    key = _open_key(Home(resolve_home(home)), passphrase_file)
    click.echo(key_code(key.public))


@witness.command("admit")
@home_option
@click.option("--key-code", required=True, help="The code the witness's phone shows.")
@click.option(
    "--role",
    type=click.Choice(["witness", "ptps"]),
    default="witness",
    show_default=True,
    help="A candidate pair's witness, or the PTPS (read-only).",
)
@click.option("--pair", type=click.IntRange(0, 99), default=0, help="The pair's ballot number.")
@click.option(
    "--seat",
    type=click.IntRange(1, 2),
    default=1,
    show_default=True,
    help="The witness's seat for that pair (at most two per pair).",
)
@click.option(
    "--election",
    "elections",
    multiple=True,
    required=True,
    help="The election (repeatable for the PTPS).",
)
@click.option("--name", default="", help="The name on the mandate letter.")
@click.option("--mandate", type=PHOTO, help="A photo of the mandate letter.")
@passphrase_option
@friendly
def witness_admit(
    home: Path | None,
    key_code: str,
    role: str,
    pair: int,
    seat: int,
    elections: tuple[str, ...],
    name: str,
    mandate: Path | None,
    passphrase_file: Path | None,
) -> None:
    """(KPPS chair) Admit a witness or the PTPS at this TPS for today; prints the admission id."""
    try:
        subject = parse_key_code(key_code)
    except ProtocolError as exc:
        raise click.BadParameter(str(exc), param_hint="--key-code") from exc
    photo = read_photo(mandate) if mandate else None
    _run(
        home,
        passphrase_file,
        lambda s, k, r, now: plenary.admit(
            s,
            k,
            r,
            subject,
            role=role,
            pair=pair,
            seat=seat,
            elections=elections,
            label=name,
            mandate=photo,
            now=now,
        ),
    )


@witness.command("object")
@home_option
@click.option("--id", "object_id", required=True, help="The disputed result's id (hex).")
@click.option("--reason", required=True, help="The objection (up to 1000 characters).")
@click.option(
    "--photo",
    "photos",
    multiple=True,
    type=PHOTO,
    help="A photo of the C.Kejadian Khusus form (up to three).",
)
@passphrase_option
@friendly
def witness_object(
    home: Path | None,
    object_id: str,
    reason: str,
    photos: tuple[Path, ...],
    passphrase_file: Path | None,
) -> None:
    """Object to a result held here (witness, KPPS member or PTPS); prints the objection id."""
    rid = _hex_id(object_id, "--id")
    datas = [read_photo(p) for p in photos]
    _run(
        home,
        passphrase_file,
        lambda s, k, r, now: plenary.object_to(s, k, r, rid, reason, datas, now),
    )


@click.group()
def ppk() -> None:
    """The PPK plenary on a kecamatan gateway: corrections and the D.Hasil, offline."""


@ppk.command("correct")
@home_option
@click.option("--id", "object_id", required=True, help="The corrected TPS result's id (hex).")
@click.option(
    "--numbers",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    required=True,
    help="JSON of the form fields the plenary found (e.g. votes, "
    "valid, invalid); the others are the result's.",
)
@click.option("--reason", required=True, help="Why (e.g. recount at the plenary).")
@click.option("--minutes", type=PHOTO, help="A photo of the plenary minutes.")
@passphrase_option
@friendly
def ppk_correct(
    home: Path | None,
    object_id: str,
    numbers: Path,
    reason: str,
    minutes: Path | None,
    passphrase_file: Path | None,
) -> None:
    """Sign a correction of one TPS result (the KPPS result and photo stay); prints its id."""
    rid = _hex_id(object_id, "--id")
    try:
        fields = json.loads(numbers.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{numbers}: not valid JSON ({exc})") from exc
    if not isinstance(fields, dict):
        raise click.ClickException(f"{numbers}: must be a JSON object of form fields")
    photo = read_photo(minutes) if minutes else None
    _run(
        home,
        passphrase_file,
        lambda s, k, r, now: plenary.correct(s, k, r, rid, fields, reason, photo, now),
    )


@ppk.command("dhasil")
@home_option
@click.option("--election", required=True, help="The election (gubernur, bupati, walikota).")
@passphrase_option
@friendly
def ppk_dhasil(home: Path | None, election: str, passphrase_file: Path | None) -> None:
    """Sign the D.Hasil of this PPK's kecamatan from the results and corrections held here."""
    _run(home, passphrase_file, lambda s, k, r, now: plenary.sign_dhasil(s, k, r, election, now))
