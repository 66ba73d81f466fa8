"""OTLP export: encoder, transports (HTTP and gRPC) and the runner that follows the log."""
