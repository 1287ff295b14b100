"""``estafet node ...``, ``result ...``, ``bundle ...`` and ``verify``: the device side."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import click

from estafet.crypto.trust import TrustStore
from estafet.relay import bundle as bundles
from estafet.relay.daemon import serve_until_signalled, setup_logging
from estafet.relay.enrollment import (
    insecure_url_warning,
    install,
    normalise_fingerprint,
    request_enrollment,
)
from estafet.relay.errors import ConfigError
from estafet.relay.home import Home, NodeConfig, parse_hostport, read_trust_file
from estafet.relay.local import endorse, submit_result
from estafet.relay.node import Node
from estafet.relay.store import Store, receipt_summary

from . import term
from .common import (
    LOG_LEVELS,
    friendly,
    get_passphrase,
    home_option,
    passphrase_option,
    resolve_home,
)


def _open_key(home: Home, passphrase_file: Path | None) -> Any:
    pw = get_passphrase(passphrase_file) if home.key_is_encrypted() else None
    return home.load_key(pw)


def _root(home: Home) -> bytes:
    root = home.load_trust()
    if root is None:
        raise ConfigError(f"{home.path} is not enrolled: run `estafet node enroll`")
    return root


@click.group()
def node() -> None:
    """Run and inspect a relay node (phone, village relay, PPK gateway)."""


@node.command("init")
@home_option
@click.option("--listen", default="0.0.0.0:7420", show_default=True, help="HOST:PORT to serve on.")
@click.option("--central", default="", help="URL of the central server, if this node may reach it.")
@click.option("--peer", "peers", multiple=True, help="A static peer HOST:PORT (repeatable).")
@click.option("--no-mdns", is_flag=True, help="Do not announce or browse with mDNS.")
@click.option("--no-beacon", is_flag=True, help="Do not send or hear UDP broadcast beacons.")
@click.option("--sweep", is_flag=True, help="Probe the local /24 for peers (hotspots).")
@click.option("--scope", default="", help="Region prefix served (default: the certificate's).")
@click.option("--name", default="", help="A label shown to peers and in status.")
@click.option(
    "--quota-mb",
    type=click.IntRange(16),
    default=1024,
    show_default=True,
    help="Storage quota for objects and photos.",
)
@click.option(
    "--no-passphrase", is_flag=True, help="Store the key unencrypted (unattended relays only)."
)
@click.option(
    "--sync-interval",
    type=click.FloatRange(0.1, 3600),
    default=5.0,
    show_default=True,
    help="Seconds between sync rounds.",
)
@passphrase_option
@friendly
def node_init(
    home: Path | None,
    listen: str,
    central: str,
    peers: tuple[str, ...],
    no_mdns: bool,
    no_beacon: bool,
    sweep: bool,
    scope: str,
    name: str,
    quota_mb: int,
    no_passphrase: bool,
    sync_interval: float,
    passphrase_file: Path | None,
) -> None:
    """Create a node home: config and a new device key."""
    h = Home(resolve_home(home))
    if h.exists():
        raise click.ClickException(f"{h.path} already holds a node; choose another --home")
    parse_hostport(listen)
    for p in peers:
        parse_hostport(p)
    pw = None if no_passphrase else get_passphrase(passphrase_file, confirm=True)
    cfg = NodeConfig(
        listen=listen,
        central=central,
        peers=list(peers),
        mdns=not no_mdns,
        beacon=not no_beacon,
        sweep=sweep,
        scope=scope,
        name=name,
        quota_mb=quota_mb,
        sync_interval=sync_interval,
    )
    h.save_config(cfg)
    key = h.create_key(pw)
    click.echo(f"node key {key.id.hex()} created in {h.path}")
    click.echo("next: estafet node enroll --central URL --code CODE")


@node.command("enroll")
@home_option
@click.option("--central", required=True, help="URL of the central server.")
@click.option("--code", required=True, help="The one-time enrollment code from the KPU.")
@click.option(
    "--trust",
    "trust_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Pin this trust anchor (from `central trust`).",
)
@click.option(
    "--root-fingerprint",
    default=None,
    help="The root fingerprint printed beside the codes (else you are asked to type it).",
)
@passphrase_option
@friendly
def node_enroll(
    home: Path | None,
    central: str,
    code: str,
    trust_file: Path | None,
    root_fingerprint: str | None,
    passphrase_file: Path | None,
) -> None:
    """Enroll this node's key with a one-time code; receive its certificate and the manifest.

    The central's root key must be confirmed before anything is pinned: give --trust FILE or
    --root-fingerprint HEX, or type the fingerprint from the code sheet when asked."""
    h = Home(resolve_home(home))
    key = _open_key(h, passphrase_file)
    warn = insecure_url_warning(central)
    if warn:
        click.secho(warn, fg="red", err=True)
    pinned = read_trust_file(trust_file) if trust_file else h.load_trust()
    if pinned is None and root_fingerprint is None:
        root_fingerprint = click.prompt(
            "Root fingerprint from the KPU code sheet (sidik jari root)", err=True
        )
    if root_fingerprint is not None:
        normalise_fingerprint(root_fingerprint)  # a typo is refused before the code is spent
    materials = asyncio.run(request_enrollment(central, code, key))
    cert = install(h.path, key, materials, pinned, fingerprint=root_fingerprint)
    cfg = h.load_config()
    if not cfg.central:
        cfg.central = central
        h.save_config(cfg)
    click.echo(
        f"enrolled as {cert.role} for {', '.join(cert.scope)} "
        f"({', '.join(cert.elections)}), certificate serial {cert.serial}"
    )


@node.command("run")
@home_option
@click.option("--listen", default=None, help="Override the configured HOST:PORT.")
@click.option("--central", default=None, help="Override the configured central URL.")
@click.option("--peer", "peers", multiple=True, help="Add a static peer HOST:PORT.")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="INFO",
    show_default=True,
    help="How much to log (JSON lines on stderr when it is not a terminal).",
)
@click.option(
    "--app/--no-app",
    "with_app",
    default=True,
    show_default=True,
    help="Serve the officer's phone app on the configured loopback address (`app` in config).",
)
@click.option("--app-listen", default=None, help="Override the app's loopback HOST:PORT.")
@passphrase_option
@friendly
def node_run(
    home: Path | None,
    listen: str | None,
    central: str | None,
    peers: tuple[str, ...],
    log_level: str,
    with_app: bool,
    app_listen: str | None,
    passphrase_file: Path | None,
) -> None:
    """Run the node daemon in the foreground until SIGTERM/SIGINT (never forks).

    The officer's app (`estafet app`) is served by this same process: one process, because
    Android 12+ kills an app's extra ("phantom") processes."""
    h = Home(resolve_home(home))

    def config() -> NodeConfig:
        cfg = h.load_config()
        if listen:
            cfg.listen = listen
        if central is not None:
            cfg.central = central
        if app_listen is not None:
            cfg.app = app_listen
        cfg.peers = [*cfg.peers, *peers]
        return cfg

    cfg = config()
    key = _open_key(h, passphrase_file)
    setup_logging(log_level)
    if h.load_trust() is None and with_app and cfg.app:
        # not enrolled: the officer enrolls from the app (provisioning file + code), then run
        if not asyncio.run(_enroll_from_app(h, cfg.app)):
            return
        cfg = config()  # enrollment may have written the central URL
    root = _root(h)

    async def main() -> None:
        n = Node(h.path, cfg, key, root)
        if not (with_app and cfg.app):
            await serve_until_signalled(n.start, n.stop)
            return
        from estafet.app.errors import AppError
        from estafet.app.port import NodePort
        from estafet.app.server import AppService

        service = AppService(NodePort(n, root), cfg.app)

        async def start() -> None:
            await n.start()
            try:
                await service.start()
            except AppError as exc:  # e.g. a second node on one laptop: relaying matters more
                logging.getLogger("estafet.app").warning("officer app not started: %s", exc)
                return
            click.echo(f"officer app: {service.url}", err=True)

        async def stop() -> None:
            await service.stop()
            await n.stop()

        await serve_until_signalled(start, stop)

    asyncio.run(main())


async def _enroll_from_app(h: Home, listen: str) -> bool:
    """Serve the app's enrollment screen until the device is enrolled (True) or a signal
    arrives (False). One process: the node starts in this same process afterwards."""
    import signal

    from estafet.app.enroll import EnrollService

    service = EnrollService(h.path, listen)
    await service.start()
    click.echo(f"not enrolled yet: enroll in the officer app at {service.url}", err=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waits = [asyncio.ensure_future(e.wait()) for e in (service.enrolled, stop)]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await asyncio.sleep(0.2)  # let the "enrolled" answer reach the browser
        await service.stop()
    return bool(service.enrolled.is_set())


_receipt_info = receipt_summary


@node.command("status")
@home_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--all", "show_all", is_flag=True, help="Also list certificates, receipts, etc.")
@friendly
def node_status(home: Path | None, as_json: bool, show_all: bool) -> None:
    """Every object held: id, kind, TPS, election, state, receipt."""
    h = Home(resolve_home(home))
    h.load_config()
    store = Store.open(h.path, int(time.time()))
    try:
        sdb = store.sync_db()
        rows = sdb.objects()
        objs = []
        for r in rows:
            if not show_all and r["state"] is None:
                continue
            receipt = sdb.receipt_raw(r["id"]) if r["receipt"] else None
            objs.append(
                {
                    "id": r["id"].hex(),
                    "kind": r["kind"],
                    "tps": r["tps"],
                    "election": r["election"],
                    "origin": r["origin"],
                    "state": r["state"] or "carried",
                    "reason": r["reason"] or "",
                    "receipt": _receipt_info(receipt),
                    "photos": [
                        {"sheet": s, "sha256": sha.hex(), "size": n, "held": held}
                        for s, sha, n, held in sdb.photos_of(r["id"])
                    ],
                }
            )
        counts = sdb.counts()
        usage = sdb.usage()
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps({"objects": objs, "counts": counts, "storage_used": usage}, indent=1))
        return
    if term.fancy():
        _status_fancy(objs, counts, usage)
        return
    click.echo(f"{'ID':17} {'KIND':12} {'TPS':14} {'ELECTION':9} {'STATE':10} RECEIPT")
    for o in objs:
        rc = o["receipt"]
        rtxt = f"{rc['status']} #{rc['log_index']}" if rc else "-"
        click.echo(
            f"{o['id'][:16]:17} {o['kind']:12} {o['tps']:14} {o['election']:9} "
            f"{o['state']:10} {rtxt}"
        )
    click.echo(
        f"\n{counts['pending']} pending, {counts['delivered']} delivered, "
        f"{counts['conflict']} conflict, {counts['rejected']} rejected; "
        f"{usage / 1e6:.1f} MB stored"
    )


STATE_COLOURS = {"delivered": "green", "pending": "yellow", "conflict": "red", "rejected": "red"}


def _status_fancy(objs: list[dict[str, Any]], counts: dict[str, int], usage: int) -> None:
    """``node status`` on a terminal: a delivery bar, coloured states, photos held."""
    total = sum(counts.get(k, 0) for k in ("pending", "delivered", "conflict", "rejected"))
    done = counts.get("delivered", 0)
    click.secho(f"delivered to the KPU {term.bar(done, total, 30)} {done}/{total}", bold=True)
    for o in objs:
        rc = o["receipt"]
        rtxt = f"{rc['status']} #{rc['log_index']}" if rc else "-"
        held = sum(1 for p in o["photos"] if p["held"])
        photos = f"photos {held}/{len(o['photos'])}" if o["photos"] else ""
        state = click.style(f"{o['state']:10}", fg=STATE_COLOURS.get(o["state"]))
        click.echo(f"{o['id'][:16]:17} {o['kind']:12} {o['tps']:14} {o['election']:9} "
                   f"{state} {rtxt:18} {photos}")  # fmt: skip
    click.echo(
        f"\n{counts['pending']} pending, {counts['delivered']} delivered, "
        f"{counts['conflict']} conflict, {counts['rejected']} rejected; "
        f"{usage / 1e6:.1f} MB stored"
    )


@node.command("peers")
@home_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@friendly
def node_peers(home: Path | None, as_json: bool) -> None:
    """Peers this node has seen, and recent refusals."""
    h = Home(resolve_home(home))
    h.load_config()
    store = Store.open(h.path, int(time.time()))
    try:
        peers = store.sync_db().peers()
        events = store.sync_db().events(20)
    finally:
        store.close()
    if as_json:
        for e in events:
            e["object"] = e["object"].hex() if e["object"] else None
        click.echo(json.dumps({"peers": peers, "events": events}, indent=1))
        return
    click.echo(f"{'KEY':17} {'ADDRESS':28} {'SOURCE':8} {'ROLE':10} UPLINK")
    for p in peers:
        click.echo(
            f"{p['id'][:16]:17} {p['addr']:28} {p['source']:8} {p['role']:10} "
            f"{'yes' if p['central_ok'] else 'no'}"
        )
    for e in events:
        click.echo(
            f"! {time.strftime('%H:%M:%S', time.localtime(e['at']))} {e['peer'][:16]} {e['reason']}"
        )


@click.group()
def result() -> None:
    """Sign and endorse TPS results (KPPS officers, witnesses)."""


@result.command("submit")
@home_option
@click.option(
    "--form",
    "form_file",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The C.Hasil numbers as JSON (see docs/rules.md).",
)
@click.option(
    "--photo",
    "photos",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A photo of one sheet, in order 1, 2, 3 (give exactly three).",
)
@passphrase_option
@friendly
def result_submit(
    home: Path | None, form_file: Path, photos: tuple[Path, ...], passphrase_file: Path | None
) -> None:
    """Check, sign and store a result; prints the new object id."""
    h = Home(resolve_home(home))
    h.load_config()
    try:
        form = json.loads(form_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{form_file}: not valid JSON ({exc})") from exc
    key = _open_key(h, passphrase_file)
    store = Store.open(h.path, int(time.time()))
    try:
        sub = submit_result(store, key, _root(h), form, list(photos), int(time.time()))
    finally:
        store.close()
    for w in sub.warnings:
        click.secho(f"  ! warning {w.rule}: {w.message}", fg="yellow", err=True)
    click.echo(sub.id.hex())


@result.command("endorse")
@home_option
@click.option("--id", "object_id", required=True, help="The result's object id (hex).")
@click.option("--object", "objects", is_flag=True, help="Sign that you object, not agree.")
@passphrase_option
@friendly
def result_endorse(
    home: Path | None, object_id: str, objects: bool, passphrase_file: Path | None
) -> None:
    """Co-sign a result held on this device (KPPS member or witness)."""
    h = Home(resolve_home(home))
    try:
        rid = bytes.fromhex(object_id)
    except ValueError as exc:
        raise click.BadParameter("must be 64 hex digits", param_hint="--id") from exc
    key = _open_key(h, passphrase_file)
    store = Store.open(h.path, int(time.time()))
    try:
        env = endorse(store, key, _root(h), rid, int(time.time()), "object" if objects else "agree")
    finally:
        store.close()
    click.echo(env.id.hex())


@click.group()
def bundle() -> None:
    """Carry objects on a USB stick or SD card where no network reaches."""


@bundle.command("export")
@home_option
@click.option(
    "--to",
    "to",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write into (the stick's mount point); estafet-bundle/ is made there.",
)
@friendly
def bundle_export(home: Path | None, to: Path) -> None:
    """Write undelivered objects and their photos as files."""
    h = Home(resolve_home(home))
    h.load_config()
    store = Store.open(h.path, int(time.time()))
    try:
        err = sys.stderr
        with click.progressbar(length=0, label="exporting", file=err, show_pos=True) as bar:
            n_obj, n_blob = bundles.export_bundle(store, to, bar.update)
    finally:
        store.close()
    click.echo(f"exported {n_obj} objects and {n_blob} photos to {to / bundles.BUNDLE}")


@bundle.command("import")
@home_option
@click.option(
    "--from",
    "src",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Folder holding estafet-bundle/ (the stick's mount point).",
)
@friendly
def bundle_import(home: Path | None, src: Path) -> None:
    """Verify and store a bundle; report what was refused and why."""
    h = Home(resolve_home(home))
    cfg = h.load_config()
    root = _root(h)
    now = int(time.time())
    total = bundles.bundle_size(src)
    store = Store.open(h.path, now)
    try:
        from estafet.relay.local import Identity

        scope = cfg.scope or Identity(store.sync_db(), root, now).body.scope[0]
        err = sys.stderr
        with click.progressbar(length=total, label="importing", file=err) as bar:
            rep = bundles.import_bundle(store, TrustStore(root), src, scope, now, bar.update)
    finally:
        store.close()
    click.echo(
        f"stored {rep.stored} new objects ({rep.duplicate} already held) and {rep.blobs} photos"
    )
    for name, why in rep.rejected:
        click.echo(f"  refused {name}: {why}")
    if rep.rejected:
        raise SystemExit(1)
