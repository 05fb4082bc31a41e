"""The in-process contenders: smtplib, aiosmtplib and smtpclient, each the way
its users would write the loop.

Every contender has ``setup()`` (connect: not timed), ``send(n)`` (send *n*
messages and return how many were fully acknowledged -- each call waits for
the final reply of every message it counts) and ``close()``.  A refusal of
any recipient is an error: the benchmark server accepts everything.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CONTENDERS", "Contender", "Spec"]


@dataclass(frozen=True)
class Spec:
    """What one worker run does (built by the runner, passed as JSON)."""

    contender: str
    host: str
    port: int
    sender: str
    recipients: list[str]
    body: str  # path of the message file
    streamed: bool = False  # read the file inside the timed loop (large messages)
    count: int = 100
    warmup: int = 20
    warmup_body: str | None = None  # a small message for the warm-up (large scenarios)
    batch: int = 100  # send_many items per call
    threads: int = 1
    pipelining: bool = True
    ca_file: str | None = None  # TLS + AUTH (the web-app scenario)
    username: str | None = None
    password: str | None = None
    trace: bool = False  # tracemalloc peak (slower)
    profile: str | None = None  # write cProfile stats of the timed loop here

    def data(self, body: str | None = None) -> Callable[[], Any]:
        """A callable giving the message as the contender passes it."""
        path = Path(body or self.body)
        if self.streamed and body is None:
            return lambda: path
        content = path.read_bytes()
        return lambda: content

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)


def _check(refused: dict[Any, Any], what: str) -> None:
    if refused:
        raise RuntimeError(f"{what}: refused {refused}")


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _in_threads(counts: list[int], work: Callable[[int, int], int]) -> int:
    """Run work(index, count) in one thread per count; return the sum."""
    done = [0] * len(counts)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            done[index] = work(index, counts[index])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(counts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return sum(done)


class Contender:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.payload = spec.data()

    def content(self) -> Any:
        item = self.payload()
        return item.read_bytes() if isinstance(item, Path) else item

    def setup(self) -> None:
        pass

    def send(self, count: int) -> int:
        raise NotImplementedError

    def close(self) -> None:
        pass


# --- smtplib ---------------------------------------------------------------------------


class Smtplib(Contender):
    """smtplib.SMTP.sendmail on one connection per thread (smtplib is not
    thread-safe), held by hand; with STARTTLS and login first when the spec
    has credentials (the web-app scenario); a large message is read whole,
    as smtplib needs it."""

    def setup(self) -> None:
        spec = self.spec
        self.smtps = [smtplib.SMTP(spec.host, spec.port) for _ in range(spec.threads)]
        for smtp in self.smtps:
            smtp.ehlo()
            if spec.ca_file is not None:
                assert spec.username is not None
                assert spec.password is not None
                smtp.starttls(context=spec.context())
                smtp.login(spec.username, spec.password)

    def send(self, count: int) -> int:
        spec = self.spec

        def work(index: int, n: int) -> int:
            smtp = self.smtps[index]
            for _ in range(n):
                _check(smtp.sendmail(spec.sender, spec.recipients, self.content()), "smtplib")
            return n

        if spec.threads == 1:
            return work(0, count)
        return _in_threads(_split(count, spec.threads), work)

    def close(self) -> None:
        for smtp in self.smtps:
            smtp.quit()


class SmtplibPerMessage(Contender):
    """What Django's SMTP backend does per request: connect, STARTTLS, login,
    sendmail, QUIT."""

    def send(self, count: int) -> int:
        spec = self.spec
        context = spec.context()
        for _ in range(count):
            smtp = smtplib.SMTP(spec.host, spec.port, timeout=30)
            try:
                smtp.starttls(context=context)
                assert spec.username is not None
                assert spec.password is not None
                smtp.login(spec.username, spec.password)
                _check(smtp.sendmail(spec.sender, spec.recipients, self.content()), "smtplib")
            finally:
                smtp.quit()
        return count


# --- aiosmtplib --------------------------------------------------------------------------


class Aiosmtplib(Contender):
    """aiosmtplib.SMTP.sendmail, one connection per concurrent task."""

    def setup(self) -> None:
        import aiosmtplib  # noqa: PLC0415 (imported only where needed)

        self.loop = asyncio.new_event_loop()
        spec = self.spec
        self.clients = [
            aiosmtplib.SMTP(hostname=spec.host, port=spec.port, start_tls=False)
            for _ in range(spec.threads)
        ]
        for client in self.clients:
            self.loop.run_until_complete(client.connect())

    def send(self, count: int) -> int:
        spec = self.spec

        async def work(client: Any, n: int) -> int:
            for _ in range(n):
                refused, _ = await client.sendmail(spec.sender, spec.recipients, self.content())
                _check(refused, "aiosmtplib")
            return n

        async def everything() -> int:
            counts = _split(count, len(self.clients))
            done = await asyncio.gather(
                *(work(c, n) for c, n in zip(self.clients, counts, strict=True))
            )
            return sum(done)

        return self.loop.run_until_complete(everything())

    def close(self) -> None:
        for client in self.clients:
            self.loop.run_until_complete(client.quit())
        self.loop.close()


class AiosmtplibPerMessage(Contender):
    """aiosmtplib.send(): a connection with STARTTLS and login per message."""

    def send(self, count: int) -> int:
        import aiosmtplib  # noqa: PLC0415 (imported only where needed)

        spec = self.spec
        context = spec.context()

        async def everything() -> int:
            for _ in range(count):
                refused, _ = await aiosmtplib.send(
                    self.content(),
                    sender=spec.sender,
                    recipients=spec.recipients,
                    hostname=spec.host,
                    port=spec.port,
                    start_tls=True,
                    tls_context=context,
                    username=spec.username,
                    password=spec.password,
                )
                _check(refused, "aiosmtplib")
            return count

        return asyncio.run(everything())


# --- smtpclient ---------------------------------------------------------------------------


def _body(item: Any) -> Any:
    """smtpclient takes a file: open it (streamed, never read whole)."""
    return item.open("rb") if isinstance(item, Path) else item


def _accepted(result: Any, wanted: int) -> int:
    """1 if *result* is a SendResult with every recipient accepted and a 2xx
    final reply (an exception in a send_many outcome list is not)."""
    accepted = getattr(result, "accepted", None)
    replies = getattr(result, "data_replies", ())
    if accepted is None or len(accepted) != wanted or not replies:
        raise RuntimeError(f"smtpclient: not fully accepted: {result!r}")
    if not 200 <= replies[-1].code < 300:
        raise RuntimeError(f"smtpclient: final reply {replies[-1]}")
    return 1


class SmtpclientSendmail(Contender):
    """Session.sendmail, one call per message, default options."""

    def setup(self) -> None:
        from smtpclient import Session  # noqa: PLC0415 (imported only where needed)

        self.session = Session.connect(
            self.spec.host, self.spec.port, use_pipelining=self.spec.pipelining
        )

    def send(self, count: int) -> int:
        spec, session, wanted = self.spec, self.session, len(self.spec.recipients)
        done = 0
        for _ in range(count):
            item = self.payload()
            body = _body(item)
            try:
                done += _accepted(session.sendmail(spec.sender, spec.recipients, body), wanted)
            finally:
                if body is not item:
                    body.close()
        return done

    def close(self) -> None:
        self.session.quit()


class SmtpclientSendMany(SmtpclientSendmail):
    """Session.send_many: batches of ``spec.batch`` messages, pipelined across
    messages; every outcome is checked."""

    def send(self, count: int) -> int:
        spec, session, wanted = self.spec, self.session, len(self.spec.recipients)
        done = 0
        while done < count:
            size = min(spec.batch, count - done)
            items = [(spec.sender, spec.recipients, self.payload()) for _ in range(size)]
            for outcome in session.send_many(items):
                done += _accepted(outcome, wanted)
        return done


class SmtpclientMailer(Contender):
    """One shared Mailer, ``spec.threads`` threads each calling Mailer.sendmail
    (STARTTLS and AUTH when the spec has credentials), default pool options
    apart from max_connections = threads."""

    def setup(self) -> None:
        from smtpclient import Mailer, TLSMode  # noqa: PLC0415 (imported only where needed)

        spec = self.spec
        tls: dict[str, Any] = {}
        if spec.ca_file is not None:
            tls = {
                "tls": TLSMode.STARTTLS,
                "ssl_context": spec.context(),
                "username": spec.username,
                "password": spec.password,
            }
        self.mailer = Mailer(spec.host, spec.port, max_connections=max(spec.threads, 4), **tls)

    def send(self, count: int) -> int:
        spec, mailer, wanted = self.spec, self.mailer, len(self.spec.recipients)

        def work(_index: int, n: int) -> int:
            done = 0
            for _ in range(n):
                done += _accepted(
                    mailer.sendmail(spec.sender, spec.recipients, self.payload()), wanted
                )
            return done

        if spec.threads == 1:
            return work(0, count)
        return _in_threads(_split(count, spec.threads), work)

    def close(self) -> None:
        self.mailer.close()


class SmtpclientPerMessage(Contender):
    """smtpclient.send(): connect, STARTTLS, AUTH, send, QUIT per message
    (for comparison with smtplib's connection per message)."""

    def send(self, count: int) -> int:
        from smtpclient import TLSMode, send  # noqa: PLC0415 (imported only where needed)

        spec, context, wanted = self.spec, self.spec.context(), len(self.spec.recipients)
        done = 0
        for _ in range(count):
            result = send(
                self.payload(),
                host=spec.host,
                port=spec.port,
                tls=TLSMode.STARTTLS,
                ssl_context=context,
                username=spec.username,
                password=spec.password,
                sender=spec.sender,
                recipients=spec.recipients,
            )
            done += _accepted(result, wanted)
        return done


CONTENDERS: dict[str, type[Contender]] = {
    "smtplib": Smtplib,
    "smtplib-per-message": SmtplibPerMessage,
    "aiosmtplib": Aiosmtplib,
    "aiosmtplib-per-message": AiosmtplibPerMessage,
    "smtpclient-sendmail": SmtpclientSendmail,
    "smtpclient-send_many": SmtpclientSendMany,
    "smtpclient-mailer": SmtpclientMailer,
    "smtpclient-per-message": SmtpclientPerMessage,
}
