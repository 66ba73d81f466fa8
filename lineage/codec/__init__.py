"""Codecs: how events are stored and read back (the library mapper, the step codec)."""
