"""Seeing the service run: metrics, logs, the event feed and watches, the status page."""
