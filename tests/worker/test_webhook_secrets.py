"""Webhook secrets at rest and the pinned connection.

A signing secret is stored sealed under the server secret (``jobs.sealing``), never in plain
form; a row from before (plaintext) is sealed by the next sender pass; a key-secret rotation
reseals every row under the new secret. The sender connects to the address its check
approved: a resolver that answers differently the second time is never asked twice.
Each test has a store of its own (a pass reseals every row it finds).
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from jobs import keys
from jobs.sealing import SealError, seal, unseal
from jobs.status import JobStatus
from jobs.store import repo
from jobs.store.models import Webhook
from jobs.webhooks import CheckedTarget, pinned_url
from tests.conftest import KEY_SECRET
from tests.factories import team_with_key, tiny_spec
from tests.webhook_receiver import Receiver, verify_signature
from worker.notify import notify_pass, send
from worker.settings import WorkerSettings

LOOPBACK = ["127.0.0.0/8"]
OLD, NEW = KEY_SECRET.encode(), b"rotated-key-secret-" + b"fedcba9876543210" * 2


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _settings(**over) -> WorkerSettings:
    return WorkerSettings(webhook_allow=LOOPBACK, webhook_backoff_s=0, **over)


def _hook_with_finished_job(sessions, url: str, *, key_secret: bytes) -> tuple[uuid.UUID, str]:
    """A team's webhook (sealed under ``key_secret``) and one succeeded job: ``(id, secret)``."""
    from jobs.specs.job import parse_spec

    team_id, _ = team_with_key(sessions)
    with sessions.begin() as s:
        hook, secret = repo.create_webhook(s, team_id, url, "", key_secret=key_secret,
                                           actor=repo.Actor.operator(team_id))  # fmt: skip
        hook.created_at = hook.created_at.replace(year=2000)  # before the job ends
        hook_id = hook.id
        job, _ = repo.create_job(s, team_id, parse_spec(tiny_spec()))
        job_id = job.id
    with sessions.begin() as s:
        claim = repo.claim_job(s, job_id, "w:1", 60)
    with sessions.begin() as s:
        repo.finish_job(s, claim, JobStatus.SUCCEEDED)
    return hook_id, secret


def _row(sessions, hook_id) -> Webhook:
    with sessions() as s:
        return s.scalars(select(Webhook).where(Webhook.id == hook_id)).one()


def test_the_signing_secret_is_stored_sealed_and_deliveries_are_signed_with_it(
    own_pg_sessions, receiver
):
    hook_id, secret = _hook_with_finished_job(own_pg_sessions, receiver.url, key_secret=OLD)
    row = _row(own_pg_sessions, hook_id)
    assert row.secret is None and secret not in row.secret_sealed
    assert secret.removeprefix("whsec_") not in row.secret_sealed
    assert row.sealed_secret_id == keys.secret_id(OLD)
    assert unseal(row.secret_sealed, OLD) == secret
    with pytest.raises(SealError, match="BILEVEL_KEY_SECRET"):
        unseal(row.secret_sealed, NEW)
    assert notify_pass(own_pg_sessions, _settings()) == 1
    [(headers, body)] = receiver.requests
    assert verify_signature(secret, headers, body)


def test_a_plaintext_secret_from_before_is_sealed_by_the_next_pass(own_pg_sessions, receiver):
    hook_id, _ = _hook_with_finished_job(own_pg_sessions, receiver.url, key_secret=OLD)
    legacy = "whsec_" + "legacy" * 7
    with own_pg_sessions.begin() as s:  # as an API of the previous version wrote it
        row = s.get(Webhook, hook_id)
        row.secret, row.secret_sealed, row.sealed_secret_id = legacy, None, None
    assert notify_pass(own_pg_sessions, _settings()) == 1
    row = _row(own_pg_sessions, hook_id)
    assert row.secret is None and unseal(row.secret_sealed, OLD) == legacy
    [(headers, body)] = receiver.requests
    assert verify_signature(legacy, headers, body)


def test_a_key_secret_rotation_reseals_every_secret_under_the_new_one(own_pg_sessions, receiver):
    hook_id, secret = _hook_with_finished_job(own_pg_sessions, receiver.url, key_secret=OLD)
    # without the secret that sealed it, the attempt fails and says why
    stranger = _settings(key_secret=NEW.decode(), webhook_max_attempts=5)
    assert notify_pass(own_pg_sessions, stranger) == 1
    assert receiver.requests == []
    with own_pg_sessions() as s:
        [d] = repo.list_deliveries(s, hook_id)
        assert d.status == "pending" and "BILEVEL_KEY_SECRET_PREVIOUS" in d.last_error
    # the rotation: the new secret, the old one as previous
    rotating = _settings(key_secret=NEW.decode(), key_secret_previous=OLD.decode())
    assert notify_pass(own_pg_sessions, rotating) == 1
    row = _row(own_pg_sessions, hook_id)
    assert row.sealed_secret_id == keys.secret_id(NEW) and unseal(row.secret_sealed, NEW) == secret
    [(headers, body)] = receiver.requests
    assert verify_signature(secret, headers, body)
    with own_pg_sessions.begin() as s:  # the old secret is no longer needed
        assert repo.reseal_webhook_secrets(s, secret=NEW) == 0


def test_sealing_is_randomised_and_authenticated():
    a, b = seal("whsec_x", OLD), seal("whsec_x", OLD)
    assert a != b and unseal(a, OLD) == unseal(b, OLD) == "whsec_x"
    tampered = a[:-6] + ("A" if a[-6] != "A" else "B") + a[-5:]
    with pytest.raises(SealError):
        unseal(tampered, OLD)


def test_the_attempt_connects_to_the_checked_address_without_resolving_again(receiver):
    """A DNS answer that changes after the check (rebinding) cannot move the request."""
    answers = [["127.0.0.1"], ["203.0.113.50"]]  # allowed first, then outside webhook_allow
    asked: list[str] = []

    def resolve(host: str) -> list[str]:
        asked.append(host)
        return answers[min(len(asked), len(answers)) - 1]

    port = receiver.server.server_port
    d = repo.DueDelivery(1, f"http://hooks.example.test:{port}/hook?x=1", "whsec_pinned",
                         "job.succeeded", uuid.uuid4(), {"a": 1}, 0)  # fmt: skip
    ok, status, error = send(d, _settings(), resolve)
    assert (ok, status, error) == (True, 204, None)
    assert asked == ["hooks.example.test"]  # once: the connection asked no resolver
    [(headers, body)] = receiver.requests
    assert headers["Host"] == f"hooks.example.test:{port}"
    assert verify_signature("whsec_pinned", headers, body)


def test_a_pinned_url_keeps_scheme_port_path_and_names_the_host():
    target = CheckedTarget("https://hooks.example:8443/p/q?x=1", "hooks.example", ("::1",))
    assert pinned_url(target) == ("https://[::1]:8443/p/q?x=1", {"Host": "hooks.example:8443"})
    target = CheckedTarget("http://hooks.example", "hooks.example", ("10.0.0.5", "10.0.0.6"))
    assert pinned_url(target) == ("http://10.0.0.5/", {"Host": "hooks.example"})


def _self_signed(tmp_path, host: str) -> tuple[str, str]:
    """A certificate for ``host`` only (no IP address in it) and its key: ``(cert, key)``."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return str(cert_path), str(key_path)


def test_an_https_attempt_to_the_checked_address_verifies_the_names_certificate(
    tmp_path, monkeypatch
):
    """The socket goes to the address, TLS's SNI and certificate check to the name: the
    certificate names only the host, so a check against the address would fail."""
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    host = "hooks.example.test"
    cert, key = _self_signed(tmp_path, host)
    seen: list[tuple[str | None, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.headers["Host"], self.path))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    sni: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: sni.append(name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("SSL_CERT_FILE", cert)  # httpx trusts this certificate alone
    try:
        port = server.server_port
        d = repo.DueDelivery(1, f"https://{host}:{port}/hook", "whsec_tls", "job.succeeded",
                             uuid.uuid4(), {"a": 1}, 0)  # fmt: skip
        assert send(d, _settings(), lambda name: ["127.0.0.1"]) == (True, 204, None)
    finally:
        server.shutdown()
        server.server_close()
    assert sni == [host] and seen == [(f"{host}:{port}", "/hook")]
