"""Tinker integration (the ``lineage[tinker]`` extra): record a Tinker job as it runs, watch
the service, recover through the SDK. Importing this needs the ``tinker`` package;
``import lineage`` never imports it."""

from __future__ import annotations

from lineage.adapters.tinker.handoff import Resumed, TinkerRecovery
from lineage.adapters.tinker.instrument import instrument, instrument_rest
from lineage.adapters.tinker.recorder import TinkerRecorder
from lineage.adapters.tinker.resume import TinkerResume, TinkerResumeError
from lineage.adapters.tinker.status_source import TinkerRunStatusSource

__all__ = ["Resumed", "TinkerRecorder", "TinkerRecovery", "TinkerResume", "TinkerResumeError",
           "TinkerRunStatusSource", "instrument", "instrument_rest"]
