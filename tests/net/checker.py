"""The village testbed's checker: the safety and delivery properties, stated once.

:meth:`Checker.check` reads every node's store (sqlite3 on ``store.db`` and the blob files), the
central server's ``central.db`` and its ``/v1/objects/get`` and ``/api/status`` (from inside its
namespace), and each phone's ``estafet node status --json``, and fails with ONE message listing
every violation as ``where: what``:

Delivery
  D1  every result created by an honest officer is held by the central server exactly once:
      one row in central.db ``objects``, verified, with the expected status (``accepted``
      unless the scenario says otherwise), and exactly one ``accepted`` entry in the ingest log
      (so it was counted once); no TPS/election slot has two accepted results.
  D2  byte-identical: the central's raw bytes (central.db and POST /v1/objects/get) equal the
      bytes the phone signed, and the id is the SHA-256 of the signed content.
  D3  the central server holds every photo of every accepted honest result, hash-checked.
  D4  the central server holds no other verified result than the expected ones (genuine ones,
      plus what the scenario names, e.g. a thief's equivocation or a superseded revision).
  D5  every honest phone holds a verified receipt (signed by the issuer the root certified,
      naming the result) for each of its results, with the expected status; ``node status
      --json`` shows it.

Safety
  S1  no forged or altered object is stored anywhere: every object in every node's store
      verifies against the trust anchor (revoked signers allowed, as evidence), and its row id
      is its content hash; at the central, everything not verified is recorded ``rejected``.
  S2  nothing made on a device was deleted before its receipt: each phone still holds each of
      its results (origin ``local``) and all three photo blobs.
  S3  stores are consistent: ``PRAGMA integrity_check`` is ok, every blob row has a file whose
      SHA-256 is its name and whose size is recorded, no blob file lacks its row.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from estafet.crypto.errors import VerifyError
from estafet.crypto.trust import TrustStore
from estafet.protocol.errors import ProtocolError
from estafet.protocol.objects import FETCH_PRIORITY, Envelope, ReceiptBody, decode_envelope

from .village import Device, Result, Village

TRUST_KINDS = ("revocation", "certificate", "manifest")


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    def bad(self, where: str, what: str) -> None:
        self.problems.append(f"{where}: {what}")

    def count(self, what: str, n: int = 1) -> None:
        self.checked[what] = self.checked.get(what, 0) + n


def verify_all(
    raws: Iterable[bytes], root_public: bytes, now: int, seed: Iterable[bytes] = ()
) -> list[tuple[str, str]]:
    """(id or '?', reason) for every object of ``raws`` that does not verify against the root.
    ``seed``: trust objects (issuer certificate, manifest, revocation lists) to learn first, each
    verified against the root the same way (a store need not hold the issuer certificate)."""
    trust = TrustStore(root_public)
    bad: list[tuple[str, str]] = []
    envs: list[tuple[bytes, Envelope]] = []
    for raw in raws:
        try:
            envs.append((raw, decode_envelope(raw)))
        except ProtocolError as exc:
            bad.append(("?", f"does not decode: {exc}"))
    ours = {env.id for _, env in envs}
    seeds = [(raw, decode_envelope(raw)) for raw in seed]
    # trust objects first, in as many passes as their order needs
    todo = [(r, e) for r, e in [*seeds, *envs] if e.kind in TRUST_KINDS]
    while todo:
        left = []
        for raw, env in todo:
            try:
                trust.learn(trust.verify(raw, now, allow_revoked=True))
            except VerifyError as exc:
                left.append((raw, env, str(exc)))
        if len(left) == len(todo):
            bad += [(env.id.hex(), why) for _, env, why in left if env.id in ours]
            break
        todo = [(r, e) for r, e, _ in left]
    for raw, env in sorted(envs, key=lambda i: FETCH_PRIORITY.get(i[1].kind, 99)):
        if env.kind in TRUST_KINDS:
            continue
        try:
            trust.verify(raw, now, allow_revoked=True)
        except VerifyError as exc:
            bad.append((env.id.hex(), str(exc)))
    return bad


class Checker:
    def __init__(self, village: Village) -> None:
        self.v = village

    def check(
        self,
        *,
        results: Iterable[Result] | None = None,
        expect: dict[str, str] | None = None,
        extra_central_results: Iterable[str] = (),
        phones: Iterable[Device] | None = None,
        nodes: Iterable[Device] | None = None,
        receipts: bool = True,
        central_photos: bool = True,
    ) -> Report:
        """Check every property; raise AssertionError listing all violations."""
        v = self.v
        results = list(v.results if results is None else results)
        expect = dict(expect or {})
        phones = list(v.phones if phones is None else phones)
        nodes = [
            d
            for d in (v.devices.values() if nodes is None else nodes)
            if d.host is not None and d.role != "central"
        ]
        rep = Report()
        now = int(time.time())
        with contextlib.closing(v.db(v.central)) as db:
            self.seed = [
                bytes(r[0])
                for r in db.execute(
                    "SELECT raw FROM objects WHERE kind IN"
                    " ('certificate', 'manifest', 'revocation') ORDER BY created"
                )
            ]
        self._central(rep, results, expect, set(extra_central_results), now, central_photos)
        for dev in nodes:
            self._store(rep, dev, now)
        self._store(rep, v.central, now)
        for phone in phones:
            self._phone(rep, phone, expect, now, receipts)
        if rep.problems:
            head = f"{len(rep.problems)} property violation(s) in the village:\n  "
            raise AssertionError(head + "\n  ".join(rep.problems) + "\n\n" + v.diagnose())
        print(f"[checker] all properties hold: {rep.checked}")
        return rep

    # -- the central server ----------------------------------------------------------------
    def _central(
        self,
        rep: Report,
        results: list[Result],
        expect: dict[str, str],
        extra: set[str],
        now: int,
        photos: bool,
    ) -> None:
        v = self.v
        where = "central"
        with contextlib.closing(v.db(v.central, "central.db")) as db:
            rows = {
                bytes(r[0]).hex(): r
                for r in db.execute(
                    "SELECT id, kind, tps, election, raw, verified, status, reason FROM objects"
                )
            }
            log: dict[str, list[str]] = {}
            for oid, status, why in db.execute(
                "SELECT object, status, photos FROM log ORDER BY idx"
            ):
                log.setdefault(bytes(oid).hex(), []).append((status, why))
            blobs = {bytes(r[0]).hex() for r in db.execute("SELECT sha256 FROM blobs")}
        try:
            fetched = v.central_objects([r.id for r in results])
        except Exception as exc:
            fetched = {}
            rep.bad(where, f"POST /v1/objects/get failed: {exc}")
        honest = {r.id for r in results}
        for r in results:
            want = expect.get(r.id, "accepted")
            row = rows.get(r.id)
            if row is None:
                rep.bad(where, f"D1 result {r.id[:16]} ({r.phone} {r.tps} {r.election}) missing")
                continue
            _, kind, tps, election, raw, verified, status, reason = row
            raw = bytes(raw)
            if not verified or status != want:
                rep.bad(
                    where,
                    f"D1 result {r.id[:16]} ({r.phone} {r.election}) is {status} "
                    f"({reason or 'no reason'}), verified={verified}; expected {want}",
                )
            # counted once: one entry accepts it; a later photos-complete entry restates it
            entries = log.get(r.id, [])
            n_acc = sum(st == "accepted" and not photos for st, photos in entries)
            if (want == "accepted" and n_acc != 1) or n_acc > 1:
                rep.bad(where, f"D1 result {r.id[:16]} accepted {n_acc} times: {entries}")
            phone_raw = self._raw(v.devices[r.phone], r.id)
            if phone_raw is None:
                rep.bad(r.phone, f"S2 its own result {r.id[:16]} is gone")
            elif raw != phone_raw:
                rep.bad(where, f"D2 result {r.id[:16]}: central bytes differ from the phone's")
            if fetched.get(r.id) is not None and fetched[r.id] != raw:
                rep.bad(
                    where, f"D2 result {r.id[:16]}: /v1/objects/get bytes differ from central.db"
                )
            elif r.id not in fetched:
                rep.bad(where, f"D2 result {r.id[:16]} not served by /v1/objects/get")
            if hashlib.sha256(decode_envelope(raw).content).hexdigest() != r.id:
                rep.bad(where, f"D2 result {r.id[:16]}: id is not the hash of its content")
            if want == "accepted" and photos:
                for sha in r.photos:
                    if sha not in blobs:
                        rep.bad(
                            where,
                            f"D3 photo {sha[:16]} of {r.id[:16]} ({r.phone} "
                            f"{r.election}) not received",
                        )
            rep.count("central results")
        slots: dict[tuple[str, str], list[str]] = {}
        for oid, (_, kind, tps, election, _raw, verified, status, _reason) in rows.items():
            if kind == "result" and status == "accepted":
                slots.setdefault((tps, election), []).append(oid)
            if kind == "result" and verified and oid not in honest and oid not in extra:
                rep.bad(
                    where,
                    f"D4 holds a result nobody honest made: {oid[:16]} {tps} {election} ({status})",
                )
            if not verified and status != "rejected":
                rep.bad(where, f"S1 unverified object {oid[:16]} has status {status}")
        for (tps, election), ids in slots.items():
            if len(ids) > 1:
                rep.bad(where, f"D1 {tps} {election} has {len(ids)} accepted results")
        verified_raws = [bytes(r[4]) for r in rows.values() if r[5]]
        for oid, why in verify_all(verified_raws, v.root_public, now, self.seed):
            rep.bad(where, f"S1 central.db object {oid[:16]} marked verified but: {why}")

    def _raw(self, dev: Device, oid: str) -> bytes | None:
        with contextlib.closing(self.v.db(dev)) as db:
            row = db.execute("SELECT raw FROM objects WHERE id = ?", [bytes.fromhex(oid)])
            got = row.fetchone()
        return bytes(got[0]) if got else None

    # -- every store ------------------------------------------------------------------------
    def _store(self, rep: Report, dev: Device, now: int) -> None:
        v = self.v
        where = dev.name
        home = dev.path("node") if dev.role == "central" else dev.path()
        try:
            db = v.db(dev)
        except sqlite3.Error as exc:
            rep.bad(where, f"S3 store.db cannot be opened: {exc}")
            return
        with contextlib.closing(db):
            ok = db.execute("PRAGMA integrity_check").fetchone()[0]
            if ok != "ok":
                rep.bad(where, f"S3 PRAGMA integrity_check: {ok}")
            rows = db.execute("SELECT id, kind, raw FROM objects").fetchall()
            blob_rows = db.execute("SELECT sha256, size FROM blobs").fetchall()
        for oid, kind, raw in rows:
            try:
                env = decode_envelope(bytes(raw))
            except ProtocolError as exc:
                rep.bad(where, f"S1 stored object {bytes(oid).hex()[:16]} does not decode: {exc}")
                continue
            if env.id != bytes(oid) or env.kind != kind:
                rep.bad(
                    where,
                    f"S1 row {bytes(oid).hex()[:16]} holds object {env.id.hex()[:16]} "
                    f"({env.kind}, row says {kind})",
                )
        for oid, why in verify_all([bytes(r[2]) for r in rows], v.root_public, now, self.seed):
            rep.bad(where, f"S1 stored object {oid[:16]} does not verify: {why}")
        rep.count("objects verified", len(rows))
        blob_dir = home / "blobs"
        named = set()
        for sha_b, size in blob_rows:
            sha = bytes(sha_b).hex()
            named.add(sha)
            f = blob_dir / sha[:2] / sha
            try:
                data = f.read_bytes()
            except OSError:
                rep.bad(where, f"S3 blob row {sha[:16]} has no file")
                continue
            if hashlib.sha256(data).hexdigest() != sha or len(data) != size:
                rep.bad(
                    where,
                    f"S3 blob file {sha[:16]} does not hash to its name "
                    f"({len(data)} bytes, row says {size})",
                )
        rep.count("blobs hashed", len(blob_rows))
        if blob_dir.is_dir():
            for sub in blob_dir.iterdir():
                if sub.name == "partial" or not sub.is_dir():
                    continue
                for f in sub.iterdir():
                    if f.name not in named:
                        rep.bad(where, f"S3 blob file {f.name[:16]} has no row")

    # -- each phone -------------------------------------------------------------------------
    def _phone(
        self, rep: Report, phone: Device, expect: dict[str, str], now: int, receipts: bool
    ) -> None:
        v = self.v
        with contextlib.closing(v.db(phone)) as db:
            local = {
                bytes(r[0]).hex(): r[1]
                for r in db.execute("SELECT id, origin FROM objects WHERE kind = 'result'")
            }
            held = {bytes(r[0]).hex() for r in db.execute("SELECT sha256 FROM blobs")}
            rc = {}
            for r in phone.results:
                got = db.execute(
                    "SELECT o.raw FROM receipts r JOIN objects o ON o.id = r.receipt"
                    " WHERE r.object = ? ORDER BY r.log_index DESC LIMIT 1",
                    [bytes.fromhex(r.id)],
                ).fetchone()
                rc[r.id] = bytes(got[0]) if got else None
        st = {o["id"]: o for o in v.node_status(phone)["objects"]} if receipts else {}
        for r in phone.results:
            if local.get(r.id) != "local":
                rep.bad(
                    phone.name,
                    f"S2 own result {r.id[:16]} ({r.election}) missing or not "
                    f"local ({local.get(r.id)})",
                )
            for sha in r.photos:
                if sha not in held:
                    rep.bad(phone.name, f"S2 photo {sha[:16]} of own result {r.id[:16]} deleted")
            if not receipts:
                continue
            want = expect.get(r.id, "accepted")
            raw = rc[r.id]
            if raw is None:
                rep.bad(phone.name, f"D5 no receipt for {r.id[:16]} ({r.election})")
                continue
            problem = self._receipt_problem(raw, r.id, want, now)
            if problem:
                rep.bad(phone.name, f"D5 receipt for {r.id[:16]}: {problem}")
            info = st.get(r.id, {}).get("receipt")
            if not info or info.get("status") != want:
                rep.bad(
                    phone.name,
                    f"D5 `node status --json` shows receipt {info} for "
                    f"{r.id[:16]}, expected status {want}",
                )
            rep.count("receipts verified")

    def _receipt_problem(self, raw: bytes, oid: str, want: str, now: int) -> str:
        bad = verify_all([raw], self.v.root_public, now)
        if bad:
            return f"does not verify: {bad[0][1]}"
        env = decode_envelope(raw)
        body = env.body
        if not isinstance(body, ReceiptBody):
            return f"is a {env.kind}"
        if body.object.hex() != oid:
            return f"names another object {body.object.hex()[:16]}"
        if body.status != want:
            return f"status {body.status} ({body.reason}), expected {want}"
        return ""
