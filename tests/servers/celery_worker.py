"""A real ``celery worker --pool=prefork --concurrency=2`` subprocess for the
task-queue tests, with its configuration passed as JSON.

The worker imports a tiny app module written into its own temporary
directory; the repository comes first on its PYTHONPATH, so the worker runs
this checkout's smtpclient.  ``children()`` lists its pool processes (to
kill one), ``stop()`` asks for a warm shutdown (the children close their
Mailers) and then makes sure nothing of it is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import kombu.pools

from ._proc import ChildServer, kill_session, pid_alive, read_log, wait_until

__all__ = ["CeleryWorker", "client_app"]

REPOSITORY = Path(__file__).resolve().parents[2]

_APP_MODULE = """\
import json
import os

from celery import Celery

import smtpclient.contrib.celery  # noqa: F401 (registers smtpclient.send_message)

_config = json.loads(os.environ["SMTPCLIENT_TEST_CELERY"])
app = Celery("smtpclient_test", broker=_config["broker"], backend=_config["broker"])
app.conf.update(_config["conf"])
"""

# Settings both sides share: JSON only, results kept, no events or remote control.
BASE_CONF: dict[str, Any] = {
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "worker_hijack_root_logger": True,
    "worker_prefetch_multiplier": 1,
    "broker_connection_retry_on_startup": True,
}


def client_app(broker: str, **conf: Any) -> Any:
    """The web process's side: a Celery app on *broker* (also the result
    backend).  Close it with ``close_client_app`` (sockets are checked)."""
    from celery import Celery  # noqa: PLC0415 (the celery extra)

    app = Celery("smtpclient_test_client", broker=broker, backend=broker, set_as_current=False)
    app.conf.update(BASE_CONF, **conf)
    return app


def close_client_app(app: Any) -> None:
    """Drop every broker and result-backend connection the app opened."""
    backend = app.backend
    consumer = getattr(backend, "result_consumer", None)
    if consumer is not None:
        with contextlib.suppress(Exception):
            consumer.stop()
    client = getattr(backend, "client", None)
    if client is not None:
        client.connection_pool.disconnect()
    app.pool.force_close_all()
    app.close()
    # Producer pools live in kombu's process-wide registry, keyed by broker:
    # close them too, so that the next app starts afresh.
    kombu.pools.reset()


class CeleryWorker(ChildServer):
    """``celery worker`` with the smtpclient task, on *broker*.

    *conf* goes to ``app.conf.update`` in the worker (``smtpclient``,
    ``smtpclient_retry`` ...).  Attributes: ``pid`` (the main process).
    """

    name = "celery worker"

    def __init__(
        self,
        broker: str,
        conf: dict[str, Any],
        *,
        concurrency: int = 2,
        start_timeout: float = 90.0,
    ) -> None:
        self.broker = broker
        self.conf = {**BASE_CONF, **conf}
        self.concurrency = concurrency
        super().__init__("smtpclient-celery-", start_timeout)

    @property
    def log_path(self) -> Path:
        return self.directory / "worker.log"

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def children(self) -> list[int]:
        """PIDs of the pool's worker processes right now."""
        try:
            text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except OSError:
            return []
        return [int(pid) for pid in text.split() if pid_alive(int(pid))]

    def _prepare(self) -> None:
        (self.directory / "smtpclient_test_app.py").write_text(_APP_MODULE)

    def _start_once(self) -> str | None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPOSITORY), str(self.directory), *filter(None, [env.get("PYTHONPATH")])]
        )
        env["SMTPCLIENT_TEST_CELERY"] = json.dumps({"broker": self.broker, "conf": self.conf})
        env.pop("CELERY_CONFIG_MODULE", None)
        argv = [
            sys.executable, "-m", "celery",
            "-A", "smtpclient_test_app",
            "worker",
            "--pool=prefork",
            f"--concurrency={self.concurrency}",
            "--loglevel=INFO",
            f"--logfile={self.log_path}",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-n", f"smtpclient-test-{os.getpid()}-{id(self)}@localhost",
        ]  # fmt: skip
        with (self.directory / "stdout.log").open("ab") as out:
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
                cwd=self.directory,
            )

        def ready() -> bool:
            return " ready." in read_log(self.log_path) and len(self.children()) >= 1

        if self._wait_running(ready):
            return None
        return "did not report ready"

    def _log_files(self) -> list[Path]:
        return [self.log_path, self.directory / "stdout.log"]

    def _stop_processes(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)  # warm shutdown: children close Mailers
            if not wait_until(lambda: process.poll() is not None, 30.0, 0.1):
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
        kill_session(process.pid)
