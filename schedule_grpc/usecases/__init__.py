"""The use cases: what callers may ask of the service, transport-free and storage-free."""
