"""OTLP export settings: each declared once, with its sources in precedence order.

Precedence: explicit argument > ``LINEAGE_*`` environment variable > the standard
``OTEL_EXPORTER_OTLP_TRACES_*`` variable > ``OTEL_EXPORTER_OTLP_*`` > default (the table test in
``tests/unit/test_otlp_config.py`` pins it). No I/O at import; ``OtlpSettings.load`` reads the
environment when called and raises ConfigurationError naming the variable, the rule and what to
set, so a malformed endpoint or header fails at start-up rather than at the first export.

The endpoint follows the OTLP exporter specification: ``OTEL_EXPORTER_OTLP_ENDPOINT`` is a base
URL to which ``/v1/traces`` is appended for HTTP; ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is used
as given, and so are ours (``LINEAGE_OTLP_ENDPOINT``, an explicit endpoint) unless they have no
path (then ``/v1/traces`` is added: ``--endpoint http://127.0.0.1:4318`` works). For gRPC the
URL names host and port.
``OTEL_EXPORTER_OTLP_TIMEOUT`` is in milliseconds, ``LINEAGE_OTLP_TIMEOUT_S`` in seconds.
For gRPC an endpoint may also be ``host:port`` with no scheme: then TLS is used unless
``OTEL_EXPORTER_OTLP_[TRACES_]INSECURE`` is true (the specification's rule); with a scheme,
``https`` means TLS and ``http`` plaintext. ``certificate`` (the CA bundle to trust),
``client_key`` and ``client_certificate`` (mutual TLS, both or neither) are PEM files, checked
to be readable at load.

The Resource follows the SDK specification: ``OTEL_RESOURCE_ATTRIBUTES`` (``key=value`` pairs,
percent-decoded) over the SDK identity keys, and ``service.name`` from
``LINEAGE_SERVICE_NAME`` / ``OTEL_SERVICE_NAME`` over the one in ``OTEL_RESOURCE_ATTRIBUTES``,
which is used when neither is set (then ``lineage``). A malformed ``OTEL_RESOURCE_ATTRIBUTES``
is the one setting that does not fail start-up: as the specification says, its whole value is
discarded and a warning logged (``LINEAGE_RESOURCE_ATTRIBUTES``, ours, still fails).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from lineage.config.loader import Setting, flag, number, resolve, resolve_one
from lineage.errors import ConfigurationError

HTTP_PROTOBUF, GRPC = "http/protobuf", "grpc"
MAX_BATCH_BYTES = 4 * 1024 * 1024
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_OTEL_BASE_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
log = logging.getLogger("lineage.otlp")

def parse_endpoint(text: str) -> str:
    """An ``http(s)://host[:port][/path]`` URL, or a bare ``host:port`` (gRPC only, checked at
    load), stripped; ValueError says what is wrong."""
    url = text.strip()
    bare = "://" not in url and re.match(r"^[\w.\-\[\]:]+:\d+$", url) is not None
    parts = urlsplit("//" + url if bare else url)
    if not bare and parts.scheme not in ("http", "https"):
        raise ValueError("must start with http:// or https://")
    if not parts.hostname or any(c.isspace() for c in url):
        raise ValueError("must name a host, with no spaces")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has a port that is not a number from 1 to 65535") from None
    if port == 0:
        raise ValueError("has port 0")
    return url


def parse_protocol(text: str) -> str:
    value = text.strip().lower()
    if value not in (HTTP_PROTOBUF, GRPC):
        raise ValueError(f"must be {HTTP_PROTOBUF} or {GRPC}")
    return value


def parse_headers(text: str) -> dict[str, str]:
    """W3C-baggage-like ``key=value,key2=value2`` (values percent-decoded), as the OTLP
    specification defines ``OTEL_EXPORTER_OTLP_HEADERS``."""
    headers: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals:
            raise ValueError(f"entry {item.strip()!r} has no '='")
        if not _TOKEN.match(key):
            raise ValueError(f"{key!r} is not a valid header name")
        decoded = unquote(value.strip())
        if any(c in decoded for c in "\r\n\0"):
            raise ValueError(f"the value of {key!r} contains a line break or NUL")
        headers[key.lower()] = decoded
    return headers


def parse_attributes(text: str) -> dict[str, str]:
    """``key=value`` pairs separated by commas, keys and values percent-decoded (the SDK
    specification's format for ``OTEL_RESOURCE_ATTRIBUTES``); an entry without ``=`` or with
    an empty key, or a percent-escape that does not decode to UTF-8, is an error."""
    pairs: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise ValueError(f"entry {item.strip()!r} is not key=value")
        try:
            pairs[unquote(key.strip(), errors="strict")] = unquote(value.strip(), errors="strict")
        except UnicodeDecodeError:
            raise ValueError(f"entry {item.strip()!r} has a percent-escape that is not UTF-8") \
                from None
    return pairs


WARNED: set[tuple[str, str]] = set()  # (variable, value) discarded with a warning already


def discarding(variable: str, parser: Any, empty: Any) -> Any:
    """``parser`` for a standard variable that the specification says to discard when it is
    malformed rather than fail (``OTEL_RESOURCE_ATTRIBUTES``: "the entire environment variable
    value SHOULD be discarded and an error SHOULD be reported"): the whole value is dropped
    (``empty()``) and a warning names the variable and what is wrong, once per process for
    each value (settings load often: every tracker, every export)."""
    def parse_or_discard(text: str) -> Any:
        try:
            return parser(text)
        except ValueError as error:
            if (variable, text) in WARNED:
                return empty()
            WARNED.add((variable, text))
            log.warning("%s=%r is malformed (%s) and is ignored, as the OpenTelemetry "
                        "specification says: no attribute of it is used", variable, text, error)
            return empty()

    return parse_or_discard


def parse_compression(text: str) -> str:
    value = text.strip().lower()
    if value not in ("gzip", "none"):
        raise ValueError("must be gzip or none")
    return value


def parse_pem_file(text: str) -> str:
    """A readable file's path (a PEM certificate or key)."""
    path = os.path.expanduser(text.strip())
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise ValueError("is not a readable file")
    return path


def _standard(name: str, parse: Any, default: Any, meaning: str) -> Setting:
    """A setting read from ``LINEAGE_OTLP_NAME``, ``OTEL_EXPORTER_OTLP_TRACES_NAME`` and
    ``OTEL_EXPORTER_OTLP_NAME``, in that order."""
    suffix = name.upper()
    return Setting(name, ((f"LINEAGE_OTLP_{suffix}", parse),
                          (f"OTEL_EXPORTER_OTLP_TRACES_{suffix}", parse),
                          (f"OTEL_EXPORTER_OTLP_{suffix}", parse)), default, meaning, parse)


def parse_export(text: str) -> str:
    value = text.strip().lower()
    aliases = {"true": "on", "1": "on", "yes": "on", "false": "off", "0": "off", "no": "off"}
    value = aliases.get(value, value)
    if value not in ("auto", "on", "off"):
        raise ValueError("must be auto, on or off")
    return value


_MS = number(float, 0.001, None, 0.001)
SETTINGS = (
    Setting("export", (("LINEAGE_OTLP_EXPORT", parse_export),), "auto",
                "auto (export when an OTLP endpoint is configured), on or off", parse_export),
    Setting("protocol", (("LINEAGE_OTLP_PROTOCOL", parse_protocol),
                             ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", parse_protocol),
                             ("OTEL_EXPORTER_OTLP_PROTOCOL", parse_protocol)),
                HTTP_PROTOBUF, "http/protobuf or grpc", parse_protocol),
    Setting("endpoint", (("LINEAGE_OTLP_ENDPOINT", parse_endpoint),
                             ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", parse_endpoint),
                             (_OTEL_BASE_ENDPOINT, parse_endpoint)),
                None, "a URL such as http://127.0.0.1:4318 (gRPC: http://127.0.0.1:4317)",
                parse_endpoint),
    Setting("headers", (("LINEAGE_OTLP_HEADERS", parse_headers),
                            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", parse_headers),
                            ("OTEL_EXPORTER_OTLP_HEADERS", parse_headers)),
                {}, "comma-separated key=value pairs, e.g. authorization=Bearer%20abc",
                parse_headers),
    Setting("timeout_s", (("LINEAGE_OTLP_TIMEOUT_S", number(float, 0.001)),
                              ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", _MS),
                              ("OTEL_EXPORTER_OTLP_TIMEOUT", _MS)),
                10.0, "the per-request timeout (OTEL_*: milliseconds, LINEAGE_*: seconds)",
                number(float, 0.001)),
    Setting("service_name", (("LINEAGE_SERVICE_NAME", str.strip),
                                 ("OTEL_SERVICE_NAME", str.strip)),
                None, "the service.name resource attribute", str.strip),
    Setting("resource_attributes", (
        ("LINEAGE_RESOURCE_ATTRIBUTES", parse_attributes),
        ("OTEL_RESOURCE_ATTRIBUTES", discarding("OTEL_RESOURCE_ATTRIBUTES", parse_attributes, dict))),
            {}, "comma-separated key=value pairs, e.g. deployment.environment=prod",
            parse_attributes),
    _standard("compression", parse_compression, "none", "gzip or none"),
    _standard("certificate", parse_pem_file, None,
              "the path of a PEM file of the CA certificate(s) to trust"),
    _standard("client_key", parse_pem_file, None,
              "the path of the PEM private key for mutual TLS"),
    _standard("client_certificate", parse_pem_file, None,
              "the path of the PEM client certificate for mutual TLS"),
    _standard("insecure", flag, False, "true or false (gRPC with a host:port endpoint: "
              "plaintext instead of TLS)"),
    Setting("steps_per_span", (("LINEAGE_OTLP_STEPS_PER_SPAN", number(int, 0, 1_000_000)),), 0,
            "0 (the trace identity's bounded grouping, as lineage trace shows it) or n step "
            "events a train steps span (1: a span per step)", number(int, 0, 1_000_000)),
    Setting("batch_spans", (("LINEAGE_OTLP_BATCH_SPANS", number(int, 1, 100_000)),), 512,
                "most spans in one export request", number(int, 1, 100_000)),
    Setting("batch_bytes", (("LINEAGE_OTLP_BATCH_BYTES",
                                 number(int, 65_536, MAX_BATCH_BYTES)),), 4_000_000,
                "most bytes in one export request (at most 4 MiB)",
                number(int, 65_536, MAX_BATCH_BYTES)),
    Setting("retry_for_s", (("LINEAGE_OTLP_RETRY_FOR_S", number(float, 0)),), 60.0,
                "how long one request is retried before the collector is reported unavailable",
                number(float, 0)),
    Setting("poll_s", (("LINEAGE_OTLP_POLL_S", number(float, 0.01)),), 0.5,
                "how often a following exporter looks for new events, in seconds",
                number(float, 0.01)),
    Setting("drain_s", (("LINEAGE_OTLP_DRAIN_S", number(float, 0)),), 10.0,
                "how long Tracker.close() waits for the background exporter to send what the "
                "tracker wrote (not at all while the collector is failing)", number(float, 0)),
    Setting("strict", (("LINEAGE_OTLP_STRICT", flag),), False,
                "raise background export failures at Tracker.close() (for tests)", flag),
)


@dataclass(frozen=True)
class OtlpSettings:
    """Resolved OTLP export settings. ``endpoint`` is the full URL requests go to."""

    export: str
    protocol: str
    endpoint: str
    endpoint_configured: bool
    headers: dict[str, str]
    timeout_s: float
    service_name: str
    resource_attributes: dict[str, str]
    steps_per_span: int
    compression: str
    certificate: str | None
    client_key: str | None
    client_certificate: str | None
    insecure: bool
    batch_spans: int
    batch_bytes: int
    retry_for_s: float
    poll_s: float
    drain_s: float
    strict: bool

    @property
    def enabled(self) -> bool:
        """Whether a tracker starts the background exporter: ``on``, or ``auto`` with an
        endpoint set explicitly or in the environment."""
        return self.export == "on" or (self.export == "auto" and self.endpoint_configured)

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **explicit: Any) -> OtlpSettings:
        """Resolve every setting (explicit values that are None count as not given)."""
        env = os.environ if environ is None else environ
        if isinstance(explicit.get("export"), bool):
            explicit = {**explicit, "export": "on" if explicit["export"] else "off"}
        values, sources = resolve(SETTINGS, explicit, env, what="OTLP setting")
        values["endpoint_configured"] = values["endpoint"] is not None
        values["endpoint"] = _traces_endpoint(values["endpoint"], sources["endpoint"],
                                              values["protocol"], values["insecure"])
        if values["service_name"] is None:
            values["service_name"] = values["resource_attributes"].get("service.name", "lineage")
        if (values["client_key"] is None) != (values["client_certificate"] is None):
            given = "client_key" if values["client_key"] is not None else "client_certificate"
            raise ConfigurationError(
                f"{sources[given]} is set but not its pair; for mutual TLS set both "
                "OTEL_EXPORTER_OTLP_CLIENT_KEY and OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE")
        return cls(**values)

    @property
    def resource(self) -> dict[str, str]:
        """The Resource's attributes beyond the SDK identity keys: ``OTEL_RESOURCE_ATTRIBUTES``
        with ``service.name`` set to the resolved ``service_name``."""
        return {**self.resource_attributes, "service.name": self.service_name}

    @classmethod
    def load_if_enabled(cls, environ: Mapping[str, str] | None = None,
                        **explicit: Any) -> OtlpSettings | None:
        """The settings when a tracker should export (see ``enabled``), else None; with export
        ``off`` nothing else is read, so a stray malformed OTLP variable cannot stop training."""
        env = os.environ if environ is None else environ
        export = explicit.get("export")
        if export is False or (export is None and resolve_one(SETTINGS[0], {}, env)[0] == "off"):
            return None
        settings = cls.load(env, **explicit)
        return settings if settings.enabled else None


def _traces_endpoint(endpoint: str | None, source: str | None, protocol: str,
                     insecure: bool) -> str:
    """The URL requests go to: the default for the protocol, or the base endpoint with
    ``/v1/traces`` appended for HTTP when it came from OTEL_EXPORTER_OTLP_ENDPOINT; a bare gRPC
    ``host:port`` gets ``https://`` (``http://`` when ``insecure``)."""
    if endpoint is None:
        return "http://localhost:4317" if protocol == GRPC else "http://localhost:4318/v1/traces"
    if "://" not in endpoint:
        if protocol != GRPC:
            label = "endpoint" if source == "explicit" else source
            raise ConfigurationError(
                f"{label}={endpoint!r} is invalid (must start with http:// or https://; a bare "
                "host:port is for gRPC only); set it to a URL such as http://127.0.0.1:4318")
        return ("http://" if insecure else "https://") + endpoint
    if protocol == HTTP_PROTOBUF and (source == _OTEL_BASE_ENDPOINT or (
            source in ("explicit", "LINEAGE_OTLP_ENDPOINT") and urlsplit(endpoint).path in ("", "/"))):
        return endpoint.rstrip("/") + "/v1/traces"
    return endpoint
