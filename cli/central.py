"""``estafet central ...``: the KPU IT officer's commands."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from estafet.central import (
    Central,
    change_passphrase,
    init_central,
    load_authority,
    load_manifest_file,
    revoke,
    void,
)
from estafet.central.enroll import SCOPED_ROLES, TPS_ROLES
from estafet.central.serve import open_central, tls_context
from estafet.central.web import parse_proxies
from estafet.relay.daemon import serve_until_signalled, setup_logging
from estafet.relay.enrollment import format_fingerprint
from estafet.relay.home import parse_hostport

from .common import (
    LOG_LEVELS,
    friendly,
    get_passphrase,
    get_root_passphrase,
    home_option,
    passphrase_option,
    resolve_home,
    root_passphrase_option,
)

if TYPE_CHECKING:
    from estafet.protocol.objects import Envelope

DAY = 86_400


@click.group()
def central() -> None:
    """Run the KPU central server: keys, enrollment codes, ingest, tally, dashboard."""


@central.command("init")
@home_option
@click.option(
    "--manifest",
    "manifest_file",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Election manifest TOML (see docs/manifest.md).",
)
@passphrase_option
@root_passphrase_option
@friendly
def central_init(
    home: Path | None,
    manifest_file: Path,
    passphrase_file: Path | None,
    root_passphrase_file: Path | None,
) -> None:
    """Create the root and issuer keys and load the election manifest.

    The issuer key (the running server's) and the root key (revocation, voids; keep it
    offline) take two different passphrases."""
    h = resolve_home(home)
    manifest = load_manifest_file(manifest_file)
    pw = get_passphrase(passphrase_file, confirm=True, what="issuer key (the server's)")
    root_pw = get_root_passphrase(root_passphrase_file, confirm=True)
    init_central(h, manifest, pw, int(time.time()), root_passphrase=root_pw)
    n_tps = len(manifest.tps)
    click.echo(
        f"central home {h} created: {manifest.name}, {len(manifest.elections)} "
        f"election(s), {n_tps} TPS"
    )
    click.echo(f"root.key can now be moved offline; keep {h / 'trust.json'} for `verify --trust`")


def _open(h: Path, passphrase_file: Path | None) -> Central:
    return Central(h, load_authority(h, get_passphrase(passphrase_file, what="issuer key")))


@central.command("codes")
@home_option
@click.option(
    "--role",
    required=True,
    type=click.Choice([*TPS_ROLES, *SCOPED_ROLES]),
    help="The role the codes enroll (kpps-* and witness per TPS; relay, gateway, ppk per "
    "device; ppk with --scope KECAMATAN).",
)
@click.option("--tps", "tps", multiple=True, help="A TPS code (repeatable) for TPS roles.")
@click.option("--all-tps", is_flag=True, help="One code for every TPS in the manifest.")
@click.option("--count", type=click.IntRange(1, 10_000), help="N device codes (relay, gateway).")
@click.option("--scope", default=None, help="Region prefix for relay/gateway codes.")
@click.option(
    "--expires-days",
    type=click.IntRange(1, 60),
    default=3,
    show_default=True,
    help="Days until an unused code expires.",
)
@passphrase_option
@friendly
def central_codes(
    home: Path | None,
    role: str,
    tps: tuple[str, ...],
    all_tps: bool,
    count: int | None,
    scope: str | None,
    expires_days: int,
    passphrase_file: Path | None,
) -> None:
    """Make one-time enrollment codes; prints JSON lines {"tps", "role", "code", "root"}.

    "root" is the root fingerprint: print it on every code sheet; `node enroll` asks for it."""
    chosen = sum(bool(x) for x in (tps, all_tps, count))
    if chosen != 1:
        raise click.UsageError("give exactly one of --tps, --all-tps, --count")
    if role in TPS_ROLES and count:
        raise click.UsageError(f"{role} codes are per TPS: use --tps or --all-tps")
    if role in SCOPED_ROLES and not count:
        raise click.UsageError(f"{role} codes are per device: use --count N")
    c = _open(resolve_home(home), passphrase_file)
    try:
        targets: list[str] | int = (
            count if count else (sorted(c.authority.manifest.tps) if all_tps else list(tps))
        )
        now = int(time.time())
        rows = c.enrollment.make_codes(role, targets, now + expires_days * DAY, now, scope)
        fingerprint = format_fingerprint(c.trust.root_id)
    finally:
        c.close()
    click.echo(f"root fingerprint (print it beside the codes): {fingerprint}", err=True)
    for r in rows:
        line = {"tps": r["tps"], "role": r["role"], "code": r["code"], "root": fingerprint}
        click.echo(json.dumps(line))


@central.command("trust")
@home_option
@friendly
def central_trust(home: Path | None) -> None:
    """Print the public trust anchor (save it for `estafet verify --trust`)."""
    path = resolve_home(home) / "trust.json"
    try:
        click.echo(path.read_text(encoding="utf-8").strip())
    except FileNotFoundError as exc:
        raise click.ClickException(f"{path} not found: run `estafet central init`") from exc


@central.command("serve")
@home_option
@click.option("--listen", default="0.0.0.0:8443", show_default=True, help="HOST:PORT.")
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="PEM certificate chain: serve HTTPS (with --tls-key).",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="PEM private key for --tls-cert.",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="INFO",
    show_default=True,
    help="How much to log (JSON lines on stderr when it is not a terminal).",
)
@click.option(
    "--cert-days",
    type=click.IntRange(1, 365),
    default=90,
    show_default=True,
    help="Days a device certificate runs from enrollment: cover the recap and dispute period.",
)
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    help="Address or network of a reverse proxy whose X-Forwarded-For is believed (repeatable).",
)
@passphrase_option
@friendly
def central_serve(
    home: Path | None,
    listen: str,
    tls_cert: Path | None,
    tls_key: Path | None,
    log_level: str,
    cert_days: int,
    trusted_proxies: tuple[str, ...],
    passphrase_file: Path | None,
) -> None:
    """Serve enrollment, ingest (the /v1/ API), the dashboard and /api/status."""
    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    parse_hostport(listen)
    try:
        proxies = parse_proxies(trusted_proxies)
    except ValueError as exc:
        raise click.UsageError(f"--trusted-proxy: {exc}") from exc
    h = resolve_home(home)
    pw = get_passphrase(passphrase_file, what="issuer key")
    tls = tls_context(tls_cert, tls_key) if tls_cert and tls_key else None
    setup_logging(log_level)

    async def main() -> None:
        node, c = open_central(h, pw, listen, tls=tls)
        c.trusted_proxies = proxies
        c.enrollment.validity = cert_days * DAY
        scheme = "https" if tls else "http"

        def ready() -> None:
            click.echo(f"central server: {scheme}://{listen} (dashboard at /)", err=True)

        try:
            await serve_until_signalled(node.start, node.stop, ready)
        finally:
            c.close()

    asyncio.run(main())


@central.command("status")
@home_option
@click.option("--json", "as_json", is_flag=True, help="The same JSON as /api/status.")
@passphrase_option
@friendly
def central_status(home: Path | None, as_json: bool, passphrase_file: Path | None) -> None:
    """Progress per election and kecamatan, the tally, conflicts."""
    c = _open(resolve_home(home), passphrase_file)
    try:
        st = c.status()
    finally:
        c.close()
    if as_json:
        click.echo(json.dumps(st, indent=1))
        return
    for e in st["elections"]:
        click.echo(
            f"{e['kind']} (region {e['region']}): {e['tps_accepted']}/{e['tps_expected']}"
            f" TPS accepted, {e['tps_conflict']} in conflict, {e['tps_missing']} missing"
        )
        tally = ", ".join(f"{k}: {v}" for k, v in sorted(e["tally"].items()))
        click.echo(f"  tally: {tally}")
        for k in e["kecamatan"]:
            done = k["tps_accepted"] / max(1, k["tps_expected"])
            bar = "#" * int(done * 20)
            click.echo(f"  {k['name'][:20]:20} [{bar:20}] {k['tps_accepted']}/{k['tps_expected']}")
    for c_ in st["conflicts"]:
        click.echo(f"CONFLICT {c_['election']} TPS {c_['tps']}: {len(c_['objects'])} results")


@central.command("revoke")
@home_option
@click.option("--serial", type=int, default=None, help="Certificate serial to revoke.")
@click.option("--key", "key_hex", default=None, help="Key id (hex) to revoke.")
@click.option("--reason", required=True, help="Why (shown to everyone who sees the list).")
@click.option(
    "--since",
    type=int,
    default=None,
    help="Compromise time (unix seconds): objects the key signed from then on are revoked, "
    "earlier ones stand (default: now).",
)
@passphrase_option
@root_passphrase_option
@friendly
def central_revoke(
    home: Path | None,
    serial: int | None,
    key_hex: str | None,
    reason: str,
    since: int | None,
    passphrase_file: Path | None,
    root_passphrase_file: Path | None,
) -> None:
    """Revoke a certificate by serial or key id; the signed list travels to every node."""
    if (serial is None) == (key_hex is None):
        raise click.UsageError("give exactly one of --serial or --key")
    try:
        kid = bytes.fromhex(key_hex) if key_hex else None
    except ValueError as exc:
        raise click.BadParameter("must be hex", param_hint="--key") from exc
    h = resolve_home(home)
    root_pw = get_root_passphrase(root_passphrase_file)
    pw = get_passphrase(passphrase_file, what="issuer key")
    now = int(time.time())
    env = revoke(h, root_pw, serial=serial, key_id=kid, reason=reason, now=now, since=since)
    _publish(h, pw, env, now)
    body = env.body
    click.echo(
        f"revocation list version {getattr(body, 'version', '?')} signed; it travels "
        "with the next sync"
    )


@central.command("passphrase")
@home_option
@click.option(
    "--key",
    "which",
    type=click.Choice(["root", "issuer"]),
    required=True,
    help="Which key to re-encrypt.",
)
@friendly
def central_passphrase(home: Path | None, which: str) -> None:
    """Give the root or issuer key a new passphrase (asked for at the prompt).

    Homes made before the two keys had separate passphrases: run `--key root` once and choose
    a root passphrase that the server's unit does not hold."""
    h = resolve_home(home)
    old = click.prompt(f"Current passphrase of the {which} key", hide_input=True, err=True)
    new = click.prompt(
        f"New passphrase for the {which} key", hide_input=True, confirmation_prompt=True, err=True
    )
    change_passphrase(h, which, old, new)
    click.echo(f"{which}.key re-encrypted under its new passphrase")


def _publish(h: Path, pw: str, env: Envelope, now: int) -> str:
    """Ingest a KPU-signed object into central.db and the central node's store, so it and the
    receipts of everything it changed travel like any other object. Returns its status."""
    from estafet.relay.accept import accept_batch

    node, c = open_central(h, pw, "127.0.0.1:0")
    try:
        # ingested into central.db (the only source of receipts), then stored with every
        # receipt it issued in the node store, so they travel like any other object
        [done] = accept_batch(node.store.sync_db(), node.trust, [env.encode()], peer="",
                              origin="local", scope="", now=now, sink=node.sink)  # fmt: skip
    finally:
        node.store.close()
        c.close()
    return done.reason or done.status


@central.command("void")
@home_option
@click.option("--result", "result_hex", required=True, help="The result id (64 hex digits).")
@click.option("--reason", required=True, help="Why (shown with the result to everyone).")
@passphrase_option
@friendly
def central_void(
    home: Path | None, result_hex: str, reason: str, passphrase_file: Path | None
) -> None:
    """Void one result: it is never counted, kept as evidence, and its receipt says voided."""
    try:
        rid = bytes.fromhex(result_hex)
    except ValueError as exc:
        raise click.BadParameter("must be hex", param_hint="--result") from exc
    h = resolve_home(home)
    pw = get_passphrase(passphrase_file, what="issuer key")
    c = Central(h, load_authority(h, pw))
    try:
        target = c.db.result_key(rid)
        auth = c.authority
    finally:
        c.close()
    if target is None:
        raise click.ClickException(f"no result {result_hex[:16]}... at this central server")
    now = int(time.time())
    env = void(auth, rid, target["tps"], target["election"], reason, now)
    status = _publish(h, pw, env, now)
    click.echo(f"void {env.id.hex()} {status}: result {result_hex[:16]}... "
               f"(TPS {target['tps']} {target['election']}) is no longer counted")  # fmt: skip
