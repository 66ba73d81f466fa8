"""Spans: the one trace identity, built as a pure function of stored events (LineageIR and
OTLP both read it)."""
