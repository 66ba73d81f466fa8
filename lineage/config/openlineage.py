"""OpenLineage export settings, resolved by the one loader (``lineage.config.loader``).

Precedence: explicit argument > ``LINEAGE_*`` > the ``openlineage-python`` client's own
variable > default. Without a URL, the client configures its transport itself (its
``OPENLINEAGE_CONFIG`` file or ``OPENLINEAGE__TRANSPORT__*`` variables: HTTP, file, console,
Kafka); a URL means HTTP to a Marquez-compatible API (``POST {url}/api/v1/lineage``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lineage.config.loader import Setting, number, resolve
from lineage.config.otlp import parse_endpoint, parse_export

SETTINGS = (
    Setting("export", (("LINEAGE_OPENLINEAGE_EXPORT", parse_export),), "auto",
            "auto (a tracker exports in the background when a URL is configured), on or off",
            parse_export),
    Setting("url", (("LINEAGE_OPENLINEAGE_URL", parse_endpoint), ("OPENLINEAGE_URL", parse_endpoint)),
            None, "the base URL of a Marquez-compatible API, e.g. http://127.0.0.1:5000",
            parse_endpoint),
    Setting("namespace", (("LINEAGE_OPENLINEAGE_NAMESPACE", str.strip),
                          ("OPENLINEAGE_NAMESPACE", str.strip)),
            "lineage", "the jobs' namespace", str.strip),
    Setting("timeout_s", (("LINEAGE_OPENLINEAGE_TIMEOUT_S", number(float, 0.001)),), 5.0,
            "the per-request timeout of the HTTP transport; how long Kafka may take to acknowledge a "
            "page of events, in seconds", number(float, 0.001)),
    Setting("poll_s", (("LINEAGE_OPENLINEAGE_POLL_S", number(float, 0.01)),), 0.5,
            "how often --follow looks for new events, in seconds", number(float, 0.01)),
)


@dataclass(frozen=True)
class OpenLineageSettings:
    export: str
    url: str | None
    namespace: str
    timeout_s: float
    poll_s: float

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **explicit: Any) -> OpenLineageSettings:
        values, _ = resolve(SETTINGS, explicit, os.environ if environ is None else environ,
                            what="OpenLineage setting")
        return cls(**values)

    @property
    def enabled(self) -> bool:
        """Whether a tracker runs the exporter in the background: ``on`` (the client's own
        configuration when no URL), or ``auto`` with a URL."""
        return self.export == "on" or (self.export == "auto" and self.url is not None)
