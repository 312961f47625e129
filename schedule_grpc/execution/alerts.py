"""Email alerts, sent off the execution path: a queue and a thread that delivers with its own retries.

An execution only puts a message on the queue; a slow, broken or unreachable SMTP server delays the
alert, never the execution, and a full queue drops the alert with a logged warning.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import smtplib
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

import backoff

from schedule_grpc.domain.models import JSON, Execution, Task
from schedule_grpc.security.secrets import scrub_text

log = logging.getLogger(__name__)

MAX_QUEUED = 1000


@dataclass(frozen=True)
class Email:
    """One alert."""

    subject: str
    body: str


@dataclass(frozen=True)
class SmtpConfig:
    """Where alerts go and how they are delivered."""

    host: str
    port: int
    sender: str
    recipients: Sequence[str]
    username: str = ""
    password: str = ""
    starttls: bool = True
    timeout_s: float = 10.0
    retries: int = 5
    retry_initial_s: float = 1.0
    ca_file: str = ""


class Alerts(Protocol):
    """Somewhere alerts go."""

    def start(self) -> None:
        """Starts delivering (a thread of its own, if it has one)."""
        ...

    def send(self, email: Email) -> None:
        """Queues ``email``; never blocks and never raises."""
        ...

    def stop(self) -> None:
        """Delivers what is queued, for a short while, then stops."""
        ...


MAX_LOGGED_SUMMARY = 400
_STACK_TRACE = "\nStack trace:"


def summary(body: str) -> str:
    """An alert's body for a log line: without the stack trace (the email has it), at most 400 characters."""
    short = body.split(_STACK_TRACE, 1)[0].strip()
    return short if len(short) <= MAX_LOGGED_SUMMARY else short[: MAX_LOGGED_SUMMARY - 1] + "…"


class LogAlerts:
    """Alerts when no SMTP server is configured: a short warning in the log (the full text is the email's)."""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def send(self, email: Email) -> None:
        short = summary(scrub_text(email.body))
        log.warning("alert (no SMTP server configured): %s", scrub_text(email.subject), extra={"alert_summary": short})


class EmailAlerts:
    """Delivers queued alerts to ``config.recipients`` through an SMTP server."""

    def __init__(self, config: SmtpConfig) -> None:
        self._config = config
        self._queue: queue.Queue[Email | None] = queue.Queue(maxsize=MAX_QUEUED)
        self._abort = threading.Event()
        self._thread = threading.Thread(target=self._run, name="email-alerts", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def send(self, email: Email) -> None:
        try:
            self._queue.put_nowait(email)
        except queue.Full:
            log.warning("alert dropped, the email queue is full: %s", email.subject)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Delivers what is queued for up to ``timeout_s``, then gives up on the rest (logged)."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout_s)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._abort.set()
            self._thread.join(self._config.timeout_s + 1)
        left = self._queue.qsize()
        if left:
            log.warning("%d alert(s) not delivered at shutdown", left)

    def _run(self) -> None:
        while True:
            email = self._queue.get()
            if email is None:
                return
            self._deliver_with_retries(email)
            if self._abort.is_set():
                return

    def _deliver_with_retries(self, email: Email) -> None:
        delays = backoff.expo(factor=self._config.retry_initial_s, max_value=60)
        next(delays)
        for attempt in range(1, self._config.retries + 2):
            try:
                self._deliver(email)
                log.info("alert sent: %s", email.subject, extra={"attempt": attempt})
                return
            except (smtplib.SMTPException, OSError) as error:
                if attempt > self._config.retries:
                    log.error("alert not delivered after %d attempts: %s: %s", attempt, email.subject, error)
                    return
                delay = next(delays)
                log.warning("alert delivery failed (%s); retrying in %.1fs", error, delay)
                if self._abort.wait(delay):
                    return

    def _deliver(self, email: Email) -> None:
        config = self._config
        message = EmailMessage()
        message["Subject"] = scrub_text(email.subject)  # credentials in URLs never leave in an email
        message["From"] = config.sender
        message["To"] = ", ".join(config.recipients)
        message.set_content(scrub_text(email.body))
        with smtplib.SMTP(config.host, config.port, timeout=config.timeout_s) as smtp:
            if config.starttls:
                smtp.starttls(context=ssl.create_default_context(cafile=config.ca_file or None))
            if config.username:
                smtp.login(config.username, config.password)
            smtp.send_message(message)


def reported_alerts(result: JSON) -> list[Email]:
    """Alerts a successful handler reports in its result: ``{"alerts": [{"subject": …, "body": …}]}``."""
    if not isinstance(result, dict) or not isinstance(result.get("alerts"), list):
        return []
    return [
        Email(subject=item["subject"], body=item["body"])
        for item in result["alerts"]
        if isinstance(item, dict) and isinstance(item.get("subject"), str) and isinstance(item.get("body"), str)
    ]


def _details(execution: Execution, task: Task) -> str:
    lines = [
        f"Task: {task.name} (handler {task.handler})",
        f"Execution: {execution.id}, attempt {execution.attempt}, trigger {execution.trigger.value}",
        f"Scheduled for: {execution.scheduled_for.isoformat()}",
        f"Error category: {execution.error_category.value if execution.error_category else 'none'}",
        f"Error: {execution.error or ''}",
    ]
    if execution.traceback:
        lines += ["", "Stack trace:", execution.traceback]
    return "\n".join(lines) + "\n"


def dead_letter_email(execution: Execution, task: Task, letter_id: str) -> Email:
    return Email(
        subject=f"[schedule] {task.name} failed {execution.attempt} times and is in the dead-letter queue",
        body=(
            f"The execution failed on its last attempt and was moved to the dead-letter queue as {letter_id}.\n"
            "Redrive it (RedriveDeadLetter) once the cause is fixed, or discard it (DiscardDeadLetter).\n\n"
            + _details(execution, task)
        ),
    )


def failure_email(execution: Execution, task: Task) -> Email:
    return Email(
        subject=f"[schedule] critical task {task.name} failed (attempt {execution.attempt})",
        body="A critical task failed; it is retried per its policy.\n\n" + _details(execution, task),
    )
