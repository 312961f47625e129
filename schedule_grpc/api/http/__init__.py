"""The HTTP/JSON shim: REST routes read from the google.api.http annotations, forwarded to the gRPC API."""
