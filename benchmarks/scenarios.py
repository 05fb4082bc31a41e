"""What is measured (scenarios, contenders) and what it must show (targets)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LABELS", "SCENARIOS", "TARGETS", "Scenario", "Target"]

SMALL = ("smtplib", "aiosmtplib", "smtp-source", "smtpclient-sendmail", "smtpclient-send_many")
LARGE = ("smtplib", "aiosmtplib", "smtp-source", "smtpclient-sendmail")

LABELS = {
    "smtplib": "smtplib sendmail",
    "aiosmtplib": "aiosmtplib sendmail",
    "smtp-source": "smtp-source (C)",
    "smtpclient-sendmail": "smtpclient sendmail",
    "smtpclient-send_many": "smtpclient send_many",
    "smtpclient-mailer": "smtpclient Mailer",
    "smtplib-per-message": "smtplib, conn/message",
    "aiosmtplib-per-message": "aiosmtplib.send, conn/msg",
    "smtpclient-per-message": "smtpclient.send, conn/msg",
}


@dataclass(frozen=True)
class Scenario:
    """One comparison: every contender sends the same messages to the same server.

    *message* is "small" (2 KiB) or a size in MiB ("5", "100"), streamed
    from a file with bare LFs and leading dots.  *seconds* is the length
    of one run in the full mode (counts are calibrated by a first run that
    is not recorded); *first* the calibration count.
    """

    key: str
    title: str
    contenders: tuple[str, ...]
    recipients: int = 1
    message: str = "small"
    rtt_ms: float = 0.0
    threads: int = 1
    # "sink" (smtp-sink), "postfix" (TLS + SASL + discard) or "postfix-plain"
    # (CHUNKING, no TLS or AUTH, discard: benchmarks/chunking.py)
    server: str = "sink"
    cpu_bound: bool = False  # client and sink on one CPU, no pipelining anywhere
    seconds: float = 1.5
    first: int = 300
    warmup: int = 200

    @property
    def large(self) -> bool:
        return self.message != "small"


SCENARIOS = [
    Scenario(
        "small-1",
        "1 recipient, 2 KiB, one connection (Mailer: one thread, one connection)",
        (*SMALL, "smtpclient-mailer"),
    ),
    Scenario("small-10", "10 recipients, 2 KiB, one connection", SMALL, recipients=10),
    Scenario(
        "large-5",
        "5 MiB from a file (bare LFs, leading dots)",
        LARGE,
        message="5",
        first=3,
        warmup=1,
        seconds=2.0,
    ),
    Scenario(
        "large-100",
        "100 MiB from a file (bare LFs, leading dots)",
        LARGE,
        message="100",
        first=1,
        warmup=1,
        seconds=0.0,
    ),
    Scenario(
        "threads-4",
        "4 threads, 1 recipient, 2 KiB (Mailer: one pool of 4 connections)",
        ("smtplib", "aiosmtplib", "smtp-source", "smtpclient-mailer"),
        threads=4,
    ),
    Scenario("rtt-1", "+1 ms RTT, 1 recipient, 2 KiB", SMALL, rtt_ms=1.0, first=40, warmup=20),
    Scenario(
        "rtt-10",
        "+1 ms RTT, 10 recipients, 2 KiB",
        SMALL,
        recipients=10,
        rtt_ms=1.0,
        first=20,
        warmup=10,
    ),
    Scenario(
        "webapp",
        "web app: 1 message per request, STARTTLS + AUTH, Postfix + Dovecot, discard",
        (
            "smtplib",
            "smtplib-per-message",
            "aiosmtplib-per-message",
            "smtpclient-per-message",
            "smtpclient-mailer",
        ),
        server="postfix",
        first=20,
        warmup=5,
        seconds=2.0,
    ),
    Scenario(
        "chunking",
        "Postfix with CHUNKING (discard), 1 recipient, 2 KiB, one connection, no proxy",
        ("smtplib", "smtpclient-sendmail"),
        server="postfix-plain",
        first=100,
        warmup=50,
    ),
    Scenario(
        "chunking-rtt",
        "+1 ms RTT, Postfix with CHUNKING (discard), 1 recipient, 2 KiB",
        ("smtplib", "smtp-source", "smtpclient-sendmail", "smtpclient-send_many"),
        rtt_ms=1.0,
        server="postfix-plain",
        first=40,
        warmup=20,
    ),
    Scenario(
        "cpu-bound",
        "client and sink on one CPU, pipelining off (smtp-sink -p), 1 recipient",
        ("smtplib", "aiosmtplib", "smtp-source", "smtpclient-sendmail"),
        cpu_bound=True,
    ),
]


@dataclass(frozen=True)
class Target:
    """*contender* in *scenario* against *baseline*: *metric* "rate"
    (messages or MiB per second, higher is better: at least *factor* x),
    "cpu" (CPU seconds per MiB: at most *factor* x the baseline's),
    "cpu-msg" (client CPU per message: at most *factor* x the baseline's) or
    "growth" (RSS growth in MiB, below *factor*; no baseline)."""

    scenario: str
    contender: str
    baseline: str | None
    factor: float
    metric: str = "rate"

    def describe(self) -> str:
        who = f"{LABELS[self.contender]} [{self.scenario}]"
        if self.metric == "rate":
            return f"{who}: >= {self.factor:g}x {LABELS[str(self.baseline)]} msg/s"
        if self.metric == "cpu":
            return f"{who}: CPU/MiB <= {self.factor:g}x {LABELS[str(self.baseline)]}'s"
        if self.metric == "cpu-msg":
            return f"{who}: CPU/msg <= {self.factor:g}x {LABELS[str(self.baseline)]}'s"
        return f"{who}: RSS growth < {self.factor:g} MiB"


TARGETS = [
    Target("small-1", "smtpclient-sendmail", "smtplib", 2.0),
    Target("small-10", "smtpclient-sendmail", "smtplib", 6.0),
    Target("small-1", "smtpclient-send_many", "smtplib", 3.5),
    Target("small-1", "smtpclient-send_many", "smtp-source", 3.0),
    Target("small-10", "smtpclient-send_many", "smtplib", 10.0),
    Target("rtt-1", "smtpclient-sendmail", "smtplib", 2.0),
    Target("rtt-10", "smtpclient-sendmail", "smtplib", 6.0),
    Target("rtt-1", "smtpclient-send_many", "smtplib", 3.5),
    Target("rtt-10", "smtpclient-send_many", "smtplib", 10.0),
    Target("large-5", "smtpclient-sendmail", "smtplib", 0.5, "cpu"),
    Target("large-100", "smtpclient-sendmail", "smtplib", 0.5, "cpu"),
    Target("large-100", "smtpclient-sendmail", None, 4.0, "growth"),
    Target("threads-4", "smtpclient-mailer", "smtplib", 3.0),
    Target("webapp", "smtpclient-mailer", "smtplib-per-message", 10.0),
    # Issue 19.4: reopening a connection is cheap (TLS resumption, PLAIN over
    # verified TLS, no delayed-ACK stall); the pool is as quick as a
    # connection held by hand.
    Target("webapp", "smtpclient-per-message", "smtplib-per-message", 1.0),
    Target("webapp", "smtpclient-mailer", "smtplib", 0.95),
    Target("cpu-bound", "smtpclient-sendmail", "smtplib", 1.5),
    # Issue 19: the client's own CPU per message against the C client's.
    Target("small-1", "smtpclient-sendmail", "smtp-source", 1.10, "cpu-msg"),
    Target("small-10", "smtpclient-sendmail", "smtp-source", 0.70, "cpu-msg"),
    Target("small-1", "smtpclient-send_many", "smtp-source", 0.90, "cpu-msg"),
    Target("small-10", "smtpclient-send_many", "smtp-source", 0.60, "cpu-msg"),
    Target("small-1", "smtpclient-mailer", "smtpclient-sendmail", 1.10, "cpu-msg"),
]
