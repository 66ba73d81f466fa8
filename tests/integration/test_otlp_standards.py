"""The OTLP exporter speaks the specification to real receivers on loopback: gzip bodies,
TLS with a CA given by the variables (HTTP and gRPC), mutual TLS, the Resource from
OTEL_RESOURCE_ATTRIBUTES, the User-Agent; and each permanent failure (a certificate that does
not verify, a missing client certificate, HTTP 400/401/403) stops at once: ExportRejectedError
after one attempt, although the retry budget is a minute.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from lineage.bootstrap import open_positions, otlp_runner, otlp_transport
from lineage.config.otlp import OtlpSettings
from lineage.errors import ExportRejectedError
from tests.otlp_receiver import GrpcReceiver, HttpReceiver, Receiver, WireGrpcReceiver
from tests.tls_certs import Certificates, make_certificates

STEPS = 5
SPANS = 3  # the root, one partial step group, finish run


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def store(tmp_path: Path, make_tracker: Callable[..., Any]) -> Any:
    tracker = make_tracker(str(tmp_path / "lineage.db"), export_otlp=False)
    with tracker.start_run("tls") as run:
        for step in range(1, STEPS + 1):
            run.log_step(step, {"loss": 1.0 / step})
    tracker.flush()
    return tracker


@pytest.fixture
def servers() -> Iterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for server in started:
        server.stop()  # type: ignore[attr-defined]


def export(tracker: Any, environ: dict[str, str], **explicit: Any) -> Any:
    """Export everything with the settings ``environ`` gives; a minute of retry budget, so a
    permanent failure that were retried would end in CollectorUnavailableError instead."""
    settings = OtlpSettings.load(environ, **explicit)
    transport = otlp_transport(settings, retry_for_s=60.0)
    runner = otlp_runner(tracker.store, open_positions(tracker.store.location), settings,
                         transport, track=False, start=0)
    try:
        runner.export_to_head()
    finally:
        transport.close()
    return runner


def server_context(certs: Certificates, *, client_auth: bool = False) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.server_cert, certs.server_key)
    if client_auth:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(certs.ca)
    return context


def grpc_credentials(certs: Certificates, *, client_auth: bool = False) -> grpc.ServerCredentials:
    pair = (Path(certs.server_key).read_bytes(), Path(certs.server_cert).read_bytes())
    return grpc.ssl_server_credentials([pair], Path(certs.ca).read_bytes() if client_auth else None,
                                       require_client_auth=client_auth)


def test_gzip_bodies_decode_to_the_same_spans_with_the_specification_user_agent(
        store: Any, servers: list[Receiver]) -> None:
    plain, zipped = HttpReceiver().start(), HttpReceiver().start()
    servers += [plain, zipped]
    export(store, {"OTEL_EXPORTER_OTLP_ENDPOINT": plain.base})
    export(store, {"OTEL_EXPORTER_OTLP_ENDPOINT": zipped.base,
                   "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "gzip"})
    assert zipped.headers[0]["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers[0]
    assert zipped.span_bytes() == plain.span_bytes() and len(plain.spans()) == SPANS
    agent = zipped.headers[0]["user-agent"]
    assert agent.startswith("lineage/") and " OTel-OTLP-Exporter-Python/" in agent


def test_the_resource_merges_otel_resource_attributes_under_the_service_name(
        store: Any, servers: list[Receiver]) -> None:
    receiver = HttpReceiver().start()
    servers.append(receiver)

    def resource(environ: dict[str, str]) -> dict[str, Any]:
        before = len(receiver.requests())
        export(store, {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.base, **environ})
        attributes = receiver.requests()[before].resource_spans[0].resource.attributes
        return {kv.key: kv.value.string_value for kv in attributes}

    attrs = "service.name=from-attrs,deployment.environment=prod,team=ml%20infra"
    found = resource({"OTEL_RESOURCE_ATTRIBUTES": attrs})
    assert found["service.name"] == "from-attrs" and found["team"] == "ml infra"
    assert found["deployment.environment"] == "prod" and found["telemetry.sdk.name"] == "lineage"
    found = resource({"OTEL_RESOURCE_ATTRIBUTES": attrs, "OTEL_SERVICE_NAME": "trainer"})
    assert found["service.name"] == "trainer" and found["deployment.environment"] == "prod"
    assert resource({})["service.name"] == "lineage"


def test_https_with_the_ca_from_the_variables(store: Any, servers: list[Receiver],
                                              certs: Certificates) -> None:
    receiver = HttpReceiver(server_context(certs)).start()
    servers.append(receiver)
    export(store, {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.base,
                   "OTEL_EXPORTER_OTLP_CERTIFICATE": certs.ca, "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"})
    assert len(receiver.spans()) == SPANS


def test_mutual_tls_over_https(store: Any, servers: list[Receiver], certs: Certificates) -> None:
    receiver = HttpReceiver(server_context(certs, client_auth=True)).start()
    servers.append(receiver)
    environ = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
               "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": certs.ca}
    with pytest.raises(ExportRejectedError, match="TLS failed"):
        export(store, environ)  # no client certificate: refused for good, not retried
    assert receiver.attempts == 0
    export(store, {**environ, "OTEL_EXPORTER_OTLP_CLIENT_KEY": certs.client_key,
                   "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": certs.client_cert})
    assert len(receiver.spans()) == SPANS


def test_a_certificate_that_does_not_verify_stops_at_once(
        store: Any, servers: list[Receiver], certs: Certificates) -> None:
    receiver = HttpReceiver(server_context(certs)).start()
    servers.append(receiver)
    with pytest.raises(ExportRejectedError, match="OTEL_EXPORTER_OTLP_CERTIFICATE") as caught:
        export(store, {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.base,
                       "OTEL_EXPORTER_OTLP_CERTIFICATE": certs.other_ca})
    assert "certificate" in str(caught.value) and receiver.attempts == 0


@pytest.mark.parametrize(("code", "says"), [(400, "could not read"), (401, "wants credentials"),
                                            (403, "refused the credentials")])
def test_each_permanent_http_failure_stops_after_one_attempt(
        store: Any, servers: list[Receiver], code: int, says: str) -> None:
    receiver = HttpReceiver().start()
    servers.append(receiver)
    receiver.fail_next(code, code, code)
    with pytest.raises(ExportRejectedError, match=f"HTTP {code}") as caught:
        export(store, {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.base})
    assert says in str(caught.value) and receiver.attempts == 1


@pytest.mark.parametrize("client_auth", [False, True])
def test_grpc_over_tls_with_a_bare_host_port_endpoint(
        store: Any, servers: list[Receiver], certs: Certificates, client_auth: bool) -> None:
    receiver = GrpcReceiver(grpc_credentials(certs, client_auth=client_auth)).start()
    servers.append(receiver)
    environ = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
               "OTEL_EXPORTER_OTLP_ENDPOINT": f"127.0.0.1:{receiver.port}",  # TLS: no insecure
               "OTEL_EXPORTER_OTLP_CERTIFICATE": certs.ca}
    if client_auth:
        environ |= {"OTEL_EXPORTER_OTLP_CLIENT_KEY": certs.client_key,
                    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": certs.client_cert}
    export(store, environ)
    assert len(receiver.spans()) == SPANS
    assert "OTel-OTLP-Exporter-Python/" in receiver.headers[0]["user-agent"]


def test_grpc_requests_are_gzip_compressed_on_the_wire(store: Any, servers: list[Receiver]) -> None:
    """Read off the wire (WireGrpcReceiver), not through a grpc server that would decompress
    unseen: with gzip each message is flagged compressed under ``grpc-encoding: gzip`` and
    is smaller, and decompressed it is the same request as the one sent without."""
    receiver = WireGrpcReceiver().start()
    servers.append(receiver)
    base = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
    export(store, base)
    export(store, base | {"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"})
    export(store, base | {"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "gzip",
                          "OTEL_EXPORTER_OTLP_COMPRESSION": "none"})
    assert receiver.compressed == [False, True, True]
    plain, *zipped = receiver.headers
    assert plain.get("grpc-encoding", "identity") == "identity"
    assert [h["grpc-encoding"] for h in zipped] == ["gzip", "gzip"]
    assert receiver.raw[0] == receiver.raw[1] == receiver.raw[2]
    assert len(receiver.spans()) == 3 * SPANS
    assert receiver.wire[1] < receiver.wire[0]  # the message on the wire: compressed


def test_grpc_tls_failures_stop_at_once_and_insecure_means_plaintext(
        store: Any, servers: list[Receiver], certs: Certificates) -> None:
    secure = GrpcReceiver(grpc_credentials(certs)).start()
    plain = GrpcReceiver().start()
    servers += [secure, plain]
    with pytest.raises(ExportRejectedError, match="TLS failed"):
        export(store, {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                       "OTEL_EXPORTER_OTLP_ENDPOINT": f"127.0.0.1:{secure.port}",
                       "OTEL_EXPORTER_OTLP_CERTIFICATE": certs.other_ca})
    export(store, {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_INSECURE": "true",
                   "OTEL_EXPORTER_OTLP_ENDPOINT": f"127.0.0.1:{plain.port}"})
    assert len(plain.spans()) == SPANS and secure.attempts == 0


def test_the_background_exporter_stops_on_a_permanent_failure(
        tmp_path: Path, make_tracker: Callable[..., Any], servers: list[Receiver],
        monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = HttpReceiver().start()
    servers.append(receiver)
    receiver.fail_next(*[401] * 50)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base)
    tracker = make_tracker(str(tmp_path / "bg.db"))
    with tracker.start_run("refused") as run:
        run.log_step(1, {"loss": 1.0})
    exporter = tracker._otlp
    exporter._thread.join(20)  # it stops by itself; the bound only keeps a broken test finite
    assert not exporter.running and isinstance(exporter.first_error, ExportRejectedError)
    assert receiver.attempts == 1
