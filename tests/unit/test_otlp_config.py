"""OTLP settings: precedence explicit > LINEAGE_* > OTEL_*_TRACES_* > OTEL_* > default, as a
table, and clear start-up errors for malformed values."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from lineage.config.otlp import SETTINGS, OtlpSettings, parse_headers
from lineage.errors import ConfigurationError

BASE, TRACES, OURS = "http://base:4318", "http://traces:4318/custom", "http://ours:4318/x"

ENDPOINTS = [
    # explicit, environment, expected endpoint (HTTP)
    ({}, {}, "http://localhost:4318/v1/traces"),
    ({}, {"OTEL_EXPORTER_OTLP_ENDPOINT": BASE}, f"{BASE}/v1/traces"),
    ({}, {"OTEL_EXPORTER_OTLP_ENDPOINT": BASE + "/"}, f"{BASE}/v1/traces"),
    ({}, {"OTEL_EXPORTER_OTLP_ENDPOINT": BASE, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": TRACES}, TRACES),
    ({}, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": TRACES, "LINEAGE_OTLP_ENDPOINT": OURS}, OURS),
    ({"endpoint": "http://arg:1/y"}, {"LINEAGE_OTLP_ENDPOINT": OURS}, "http://arg:1/y"),
    ({"endpoint": None}, {"LINEAGE_OTLP_ENDPOINT": OURS}, OURS),
    ({"endpoint": "http://arg:4318"}, {}, "http://arg:4318/v1/traces"),
    ({}, {"LINEAGE_OTLP_ENDPOINT": "http://ours:4318/"}, "http://ours:4318/v1/traces"),
    ({}, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:4318"}, "http://t:4318"),
    ({}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, "http://localhost:4318/v1/traces"),
    ({"protocol": "grpc"}, {}, "http://localhost:4317"),
    ({}, {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"},
     "http://c:4317"),
]


@pytest.mark.parametrize(("explicit", "environ", "expected"), ENDPOINTS)
def test_endpoint_precedence(explicit: dict[str, Any], environ: dict[str, str], expected: str) -> None:
    assert OtlpSettings.load(environ, **explicit).endpoint == expected


_ALL = {"LINEAGE_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "LINEAGE_OTLP_HEADERS": "a=ours", "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "a=traces",
        "OTEL_EXPORTER_OTLP_HEADERS": "a=all",
        "LINEAGE_OTLP_TIMEOUT_S": "2.5", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "3500",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "4500",
        "LINEAGE_SERVICE_NAME": "ours", "OTEL_SERVICE_NAME": "std"}


def _without(*names: str) -> dict[str, str]:
    return {k: v for k, v in _ALL.items() if k not in names}


PRECEDENCE = [
    # setting, explicit value, environment, expected
    ("protocol", "grpc", _ALL, "grpc"),
    ("protocol", None, _ALL, "http/protobuf"),
    ("protocol", None, _without("LINEAGE_OTLP_PROTOCOL"), "grpc"),
    ("protocol", None, {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "grpc"),
    ("protocol", None, {}, "http/protobuf"),
    ("headers", {"a": "explicit"}, _ALL, {"a": "explicit"}),
    ("headers", None, _ALL, {"a": "ours"}),
    ("headers", None, _without("LINEAGE_OTLP_HEADERS"), {"a": "traces"}),
    ("headers", None, {"OTEL_EXPORTER_OTLP_HEADERS": "a=all"}, {"a": "all"}),
    ("headers", None, {}, {}),
    ("timeout_s", 1.5, _ALL, 1.5),
    ("timeout_s", None, _ALL, 2.5),
    ("timeout_s", None, _without("LINEAGE_OTLP_TIMEOUT_S"), 3.5),  # OTEL_*: milliseconds
    ("timeout_s", None, {"OTEL_EXPORTER_OTLP_TIMEOUT": "4500"}, 4.5),
    ("timeout_s", None, {}, 10.0),
    ("service_name", "arg", _ALL, "arg"),
    ("service_name", None, _ALL, "ours"),
    ("service_name", None, _without("LINEAGE_SERVICE_NAME"), "std"),
    ("service_name", None, {}, "lineage"),
]


@pytest.mark.parametrize(("name", "explicit", "environ", "expected"), PRECEDENCE)
def test_each_layer_beats_the_ones_below(name: str, explicit: Any, environ: dict[str, str],
                                          expected: Any) -> None:
    assert getattr(OtlpSettings.load(environ, **{name: explicit}), name) == expected


@pytest.mark.parametrize(("export", "environ", "enabled"), [
    (None, {}, False),
    (None, {"OTEL_EXPORTER_OTLP_ENDPOINT": BASE}, True),
    (None, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": TRACES}, True),
    (None, {"LINEAGE_OTLP_EXPORT": "on"}, True),
    (None, {"LINEAGE_OTLP_EXPORT": "off", "OTEL_EXPORTER_OTLP_ENDPOINT": BASE}, False),
    (True, {"LINEAGE_OTLP_EXPORT": "off"}, True),
    (False, {"OTEL_EXPORTER_OTLP_ENDPOINT": BASE}, False),
    ("auto", {"OTEL_EXPORTER_OTLP_ENDPOINT": BASE}, True),
])
def test_auto_exports_when_an_endpoint_is_configured(export: Any, environ: dict[str, str],
                                                      enabled: bool) -> None:
    assert OtlpSettings.load(environ, export=export).enabled is enabled


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318", "must start with http"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://", "must name a host"),
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://host:99999/v1/traces", "port"),
    ("LINEAGE_OTLP_ENDPOINT", "ftp://host", "must start with http"),
    ("OTEL_EXPORTER_OTLP_HEADERS", "authorization", "has no '='"),
    ("OTEL_EXPORTER_OTLP_HEADERS", "bad key=1", "not a valid header name"),
    ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "a=%0d%0aInjected: 1", "line break"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "http/protobuf or grpc"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon", "could not convert"),
    ("LINEAGE_OTLP_EXPORT", "maybe", "auto, on or off"),
    ("LINEAGE_OTLP_BATCH_BYTES", "9999999", "at most"),
])
def test_malformed_values_fail_at_start_up_naming_the_variable(variable: str, value: str,
                                                                says: str) -> None:
    with pytest.raises(ConfigurationError, match=variable) as caught:
        OtlpSettings.load({variable: value})
    assert says in str(caught.value) and "set it to" in str(caught.value)


def test_an_explicit_malformed_endpoint_is_refused_too() -> None:
    with pytest.raises(ConfigurationError, match="endpoint='nope'"):
        OtlpSettings.load({}, endpoint="nope")
    with pytest.raises(ConfigurationError, match="unknown OTLP setting"):
        OtlpSettings.load({}, colour="blue")


def test_headers_follow_the_otlp_format() -> None:
    assert parse_headers("Authorization=Bearer%20abc, x-tenant = acme ,,") == {
        "authorization": "Bearer abc", "x-tenant": "acme"}
    assert parse_headers("") == {}


def test_each_setting_is_declared_once() -> None:
    names = [s.name for s in SETTINGS]
    variables = [variable for s in SETTINGS for variable, _ in s.sources]
    assert len(set(names)) == len(names) and len(set(variables)) == len(variables)
    assert all(s.meaning and s.sources[0][0].startswith("LINEAGE_") for s in SETTINGS)


def test_the_standard_tls_compression_and_insecure_variables_follow_the_precedence(
        tmp_path: Any) -> None:
    ca, key, cert = (tmp_path / n for n in ("ca.pem", "key.pem", "cert.pem"))
    for path in (ca, key, cert):
        path.write_text("PEM")
    table = [
        ("compression", {"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}, "gzip"),
        ("compression", {"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
                         "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "none"}, "none"),
        ("compression", {"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "none",
                         "LINEAGE_OTLP_COMPRESSION": "GZIP"}, "gzip"),
        ("compression", {}, "none"),
        ("certificate", {"OTEL_EXPORTER_OTLP_CERTIFICATE": str(ca)}, str(ca)),
        ("certificate", {"OTEL_EXPORTER_OTLP_CERTIFICATE": "/nope",
                         "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": str(ca)}, str(ca)),
        ("certificate", {}, None),
        ("insecure", {"OTEL_EXPORTER_OTLP_INSECURE": "true"}, True),
        ("insecure", {"OTEL_EXPORTER_OTLP_INSECURE": "true",
                      "OTEL_EXPORTER_OTLP_TRACES_INSECURE": "false"}, False),
        ("insecure", {}, False),
    ]
    for name, environ, expected in table:
        assert getattr(OtlpSettings.load(environ), name) == expected, (name, environ)
    both = OtlpSettings.load({"OTEL_EXPORTER_OTLP_CLIENT_KEY": str(key),
                              "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE": str(cert)})
    assert (both.client_key, both.client_certificate) == (str(key), str(cert))
    with pytest.raises(ConfigurationError, match="OTEL_EXPORTER_OTLP_CLIENT_KEY is set but not"):
        OtlpSettings.load({"OTEL_EXPORTER_OTLP_CLIENT_KEY": str(key)})
    with pytest.raises(ConfigurationError, match=r"OTEL_EXPORTER_OTLP_CERTIFICATE='/nope'.*readable"):
        OtlpSettings.load({"OTEL_EXPORTER_OTLP_CERTIFICATE": "/nope"})
    with pytest.raises(ConfigurationError, match="must be gzip or none"):
        OtlpSettings.load({"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"})


@pytest.mark.parametrize(("environ", "expected"), [
    ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "c:4317"},
     "https://c:4317"),  # no scheme: TLS unless insecure (the specification's rule)
    ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "c:4317",
      "OTEL_EXPORTER_OTLP_INSECURE": "true"}, "http://c:4317"),
    ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:4317",
      "OTEL_EXPORTER_OTLP_INSECURE": "true"}, "https://c:4317"),  # a scheme decides
])
def test_grpc_endpoints_without_a_scheme(environ: dict[str, str], expected: str) -> None:
    assert OtlpSettings.load(environ).endpoint == expected


@pytest.mark.parametrize(("environ", "service", "extra"), [
    ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=a,k=v%2Cw"}, "a", {"k": "v,w"}),
    ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=a", "OTEL_SERVICE_NAME": "b"}, "b", {}),
    ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=a", "LINEAGE_SERVICE_NAME": "c",
      "OTEL_SERVICE_NAME": "b"}, "c", {}),
    ({"LINEAGE_RESOURCE_ATTRIBUTES": "k=ours", "OTEL_RESOURCE_ATTRIBUTES": "k=std"}, "lineage",
     {"k": "ours"}),
    ({}, "lineage", {}),
])
def test_resource_attributes_merge_as_the_sdk_specification_says(
        environ: dict[str, str], service: str, extra: dict[str, str]) -> None:
    settings = OtlpSettings.load(environ)
    assert settings.service_name == service
    assert settings.resource == {**settings.resource_attributes, "service.name": service}
    assert extra.items() <= settings.resource.items()


@pytest.mark.parametrize("malformed", [
    "novalue", "k=v,novalue", "=v,k=v", "k=v,bad=%FF%FE", "service.name=a,,%C3=x,oops",
])
def test_a_malformed_otel_resource_attributes_is_discarded_whole_with_a_warning(
        malformed: str, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK specification: "the entire environment variable value SHOULD be discarded and
    an error SHOULD be reported": start-up goes on, no pair of it is used, a warning says why.
    Ours (LINEAGE_RESOURCE_ATTRIBUTES) still fails at start-up naming the variable. The
    warning is given once per process for a value, however often settings load."""
    from lineage.config import otlp

    monkeypatch.setattr(otlp, "WARNED", set())  # as in a fresh process
    with caplog.at_level(logging.WARNING, logger="lineage.otlp"):
        for _ in range(3):
            settings = OtlpSettings.load({"OTEL_RESOURCE_ATTRIBUTES": malformed,
                                          "OTEL_SERVICE_NAME": "svc"})
    assert settings.resource_attributes == {} and settings.resource == {"service.name": "svc"}
    [warning] = [r.getMessage() for r in caplog.records if r.name == "lineage.otlp"]
    assert warning.startswith("OTEL_RESOURCE_ATTRIBUTES=") and "is ignored" in warning
    assert OtlpSettings.load({"OTEL_RESOURCE_ATTRIBUTES": malformed,
                              "LINEAGE_RESOURCE_ATTRIBUTES": "k=ours"}).resource_attributes == {
        "k": "ours"}  # ours, when set, is used without reading the standard one
    with pytest.raises(ConfigurationError, match=r"LINEAGE_RESOURCE_ATTRIBUTES.*invalid"):
        OtlpSettings.load({"LINEAGE_RESOURCE_ATTRIBUTES": malformed})


def test_resource_attribute_keys_and_values_are_percent_decoded() -> None:
    settings = OtlpSettings.load({"OTEL_RESOURCE_ATTRIBUTES": "a%3Db=c%3Dd, e = f=g ,h=%E2%9C%93"})
    assert settings.resource_attributes == {"a=b": "c=d", "e": "f=g", "h": "\u2713"}
