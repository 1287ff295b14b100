"""Enrollment codes: single use, expiring, hashed at rest, guessing rate-limited."""

from __future__ import annotations

from pathlib import Path

import pytest

from estafet.central.authority import Authority
from estafet.central.db import SQLiteCentralDB
from estafet.central.enroll import Enrollment, client_block, normalise_code
from estafet.central.errors import EnrollError
from estafet.central.ingest import Central
from estafet.crypto.keys import SigningKey, key_id
from estafet.crypto.trust import TrustStore
from estafet.protocol.objects import CertificateBody, ManifestBody, RevocationBody
from tests.kit import DAY, NOW, TPS_A, TPS_B, World

EXPIRES = NOW + 2 * DAY


def codes_for(central: Central, *tps: str, role: str = "kpps-chair") -> list[str]:
    made = central.enrollment.make_codes(role, list(tps), EXPIRES, NOW)
    assert [m["tps"] for m in made] == list(tps) and all(m["role"] == role for m in made)
    return [m["code"] for m in made]


def refused(
    central: Central,
    code: str,
    *,
    key: bytes | None = None,
    now: int = NOW,
    client: str = "10.0.0.1",
) -> str:
    with pytest.raises(EnrollError) as info:
        central.enroll(code, key or SigningKey.generate().public, now, client)
    return info.value.reason


def test_enroll_a_chair(central: Central, world: World) -> None:
    (code,) = codes_for(central, TPS_A)
    key = SigningKey.generate()
    got = central.enroll(code, key.public, NOW + 5, "10.0.0.1")
    cert = got.certificate.body
    assert isinstance(cert, CertificateBody)
    assert (cert.role, cert.scope, cert.elections) == (
        "kpps-chair",
        (TPS_A,),
        ("gubernur", "bupati"),
    )
    assert cert.subject == key.public and cert.not_before == NOW + 5
    assert cert.not_after == NOW + 5 + 90 * DAY
    assert got.root_id == world.root.id and got.root_public == world.root.public
    assert isinstance(got.manifest.body, ManifestBody)
    assert isinstance(got.revocation.body, RevocationBody)
    # a fresh device pinning the root id's key can check everything it was given
    device = TrustStore(world.root.public)
    for env in (got.issuer_certificate, got.manifest, got.revocation):
        device.learn(device.verify(env, NOW))
    assert device.verify(got.certificate, NOW).signer.role == "issuer"
    assert set(got.to_wire()) == {
        "certificate",
        "issuer_certificate",
        "root_public",
        "root_id",
        "manifest",
        "revocation",
    }


def test_serials_count_up_and_codes_are_typable(central: Central) -> None:
    codes = codes_for(central, TPS_A, TPS_B, role="witness")
    for c in codes:
        assert len(c) == 19 and c.count("-") == 3
        assert normalise_code(c.lower().replace("-", " ")) == c.replace("-", "")
    assert normalise_code("0O1I-L000-0000-0000") == "0011100000000000"
    assert normalise_code("too short") is None
    serials = []
    for c in codes:
        body = central.enroll(c, SigningKey.generate().public, NOW, "x").certificate.body
        assert isinstance(body, CertificateBody)
        serials.append(body.serial)
    assert serials == [2, 3]


def test_a_code_works_once(central: Central) -> None:
    (code,) = codes_for(central, TPS_A)
    key = SigningKey.generate()
    central.enroll(code, key.public, NOW, "10.0.0.1")
    assert refused(central, code) == "already-used"  # another key
    assert refused(central, code.lower().replace("-", "")) == "already-used"


def test_expired_wrong_and_malformed_codes(central: Central) -> None:
    (code,) = codes_for(central, TPS_A)
    assert refused(central, code, now=EXPIRES) == "expired"
    assert refused(central, "ABCD-EFGH-JKMN-PQRS") == "unknown-code"
    assert refused(central, "not a code at all") == "unknown-code"
    assert refused(central, code, key=b"short") == "bad-key"


def test_a_key_enrolls_once(central: Central) -> None:
    first, second = codes_for(central, TPS_A, TPS_B)
    key = SigningKey.generate()
    central.enroll(first, key.public, NOW, "c")
    assert refused(central, second, key=key.public) == "bad-key"
    central.enroll(second, SigningKey.generate().public, NOW, "c")  # the code was not spent


def test_guessing_is_rate_limited_per_client_block(central: Central) -> None:
    good, other = codes_for(central, TPS_A, TPS_B)
    for i in range(10):
        assert refused(central, f"AAAA-AAAA-AAAA-{i:04d}", now=NOW + i) == "unknown-code"
    # the eleventh attempt is refused even with a good code, from anywhere in the /24
    assert refused(central, good, now=NOW + 20) == "rate-limited"
    assert refused(central, good, now=NOW + 20, client="10.0.0.77") == "rate-limited"
    # another block is not affected
    central.enroll(other, SigningKey.generate().public, NOW + 20, "10.0.1.2")
    # once the window has passed, the client may try again
    central.enroll(good, SigningKey.generate().public, NOW + 9 + 601, "10.0.0.1")


def test_no_global_switch_many_blocks_failing_do_not_lock_out_another(
    central: Central, authority: Authority
) -> None:
    """Attack (issue 11, item 5): failures from many clients used to trip a global limit that
    refused every enrollment. Now 2,000 failures from 200 blocks leave a fresh block alone."""
    (good,) = codes_for(central, TPS_A)
    strict = Enrollment(central.db, authority)
    for i in range(2000):
        with pytest.raises(EnrollError, match=r"unknown-code|rate-limited"):
            strict.enroll(f"AAAA-AAAA-AAAA-{i:04d}", bytes(32), NOW, f"10.{i % 200}.0.1")
    strict.enroll(good, SigningKey.generate().public, NOW, "192.168.7.7")


def test_one_code_is_locked_after_its_own_failures_without_locking_other_codes(
    central: Central,
) -> None:
    good, other = codes_for(central, TPS_A, TPS_B)
    key = SigningKey.generate()
    central.enroll(good, key.public, NOW, "10.0.0.1")
    for i in range(5):  # five other keys try the spent code from five blocks
        assert refused(central, good, client=f"10.{i}.9.9") == "already-used"
    assert refused(central, good, client="10.99.9.9") == "rate-limited"
    central.enroll(other, SigningKey.generate().public, NOW, "10.99.9.9")


def test_retry_with_the_same_code_and_key_returns_the_same_certificate(central: Central) -> None:
    """Attack/accident (issue 11, item 5): the answer is lost, the phone retries; it used to get
    already-used and was stranded with a spent code."""
    (code,) = codes_for(central, TPS_A)
    key = SigningKey.generate()
    first = central.enroll(code, key.public, NOW, "10.0.0.1")
    again = central.enroll(code, key.public, NOW + 60, "10.0.0.2")
    assert again.certificate.encode() == first.certificate.encode()
    assert again.root_id == first.root_id
    assert refused(central, code, now=NOW + 61) == "already-used"


def test_client_blocks() -> None:
    assert client_block("10.1.2.3") == "10.1.2.0/24"
    assert client_block("::ffff:10.1.2.3") == "10.1.2.0/24"
    assert client_block("2001:db8:1:2:3::4") == "2001:db8:1::/56"
    assert client_block("unknown") == "unknown"


def test_codes_are_stored_only_as_hashes(central: Central) -> None:
    codes = codes_for(central, TPS_A, TPS_B) + [
        m["code"] for m in central.enrollment.make_codes("relay", 3, EXPIRES, NOW)
    ]
    if isinstance(central.db, SQLiteCentralDB):  # the bytes on disk
        central.db.checkpoint()
        files = [p for p in Path(central.home).iterdir() if p.name.startswith("central.db")]
        blob = b"".join(p.read_bytes() for p in files)
    else:  # every column of every row PostgreSQL holds for the codes
        rows = central.db.query("SELECT * FROM enroll_codes")
        blob = b"|".join(
            v if isinstance(v, bytes) else str(v).encode() for r in rows for v in r.values()
        )
    for code in codes:
        assert code.encode() not in blob
        assert code.replace("-", "").encode() not in blob
        assert central.enrollment.code_hash(code.replace("-", "")) in blob


def test_device_codes_take_a_region_scope(central: Central) -> None:
    made = central.enrollment.make_codes("relay", 2, EXPIRES, NOW)
    assert [(m["tps"], m["scope"]) for m in made] == [("", "6302"), ("", "6302")]
    (gw,) = central.enrollment.make_codes("gateway", 1, EXPIRES, NOW, scope="630214")
    cert = central.enroll(gw["code"], SigningKey.generate().public, NOW, "c").certificate.body
    assert isinstance(cert, CertificateBody)
    assert (cert.role, cert.scope) == ("gateway", ("630214",))
    with pytest.raises(EnrollError, match="not a region we serve"):
        central.enrollment.make_codes("gateway", 1, EXPIRES, NOW, scope="6401")
    with pytest.raises(EnrollError, match="TPS not in the manifest"):
        central.enrollment.make_codes("kpps-member", ["6302999999001"], EXPIRES, NOW)
    with pytest.raises(EnrollError, match="role must be one of"):
        central.enrollment.make_codes("issuer", 1, EXPIRES, NOW)


def test_enrolled_certificate_is_recorded(central: Central) -> None:
    (code,) = codes_for(central, TPS_B, role="kpps-member")
    key = SigningKey.generate()
    central.enroll(code, key.public, NOW, "c")
    row = central.db.issued_label(key_id(key.public))
    assert row is not None and row["role"] == "kpps-member" and row["scope"] == TPS_B


def test_certificate_validity_is_configurable(central: Central) -> None:
    (code,) = codes_for(central, TPS_A)
    central.enrollment.validity = 30 * DAY
    cert = central.enroll(code, SigningKey.generate().public, NOW, "c").certificate.body
    assert isinstance(cert, CertificateBody) and cert.not_after == NOW + 30 * DAY
