"""schedule-grpc: a cron scheduling service with a gRPC API."""

__version__ = "1.0.0"
