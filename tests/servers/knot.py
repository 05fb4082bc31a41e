"""A throwaway Knot DNS authoritative server on 127.0.0.1, for resolver tests.

    with KnotServer({"example.test": example_zone()}) as knot:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = knot.port

The server answers on one free port over UDP and TCP; everything it writes
(config, zone files, database, pid file, log) is in its own temp directory.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from ._proc import (
    accepts,
    free_port,
    kill_session,
    lost_port_race,
    require_binary,
    tail,
    wait_until,
)

__all__ = ["ZONES_DIR", "KnotServer", "example_zone"]

ZONES_DIR = Path(__file__).parent / "zones"


def example_zone() -> str:
    """The project's test zone for ``example.test`` (see the comments in it)."""
    return (ZONES_DIR / "example.test.zone").read_text(encoding="utf-8")


class KnotServer:
    """``knotd`` serving ``zones`` ({zone name: zone file text}) on 127.0.0.1.

    Arguments: ``zones``; keyword ``start_timeout`` (seconds).
    Attributes: ``host`` ("127.0.0.1"), ``port`` (UDP and TCP),
    ``directory``, ``zones``. Methods: ``start()``, ``stop()``, ``log()``.
    """

    def __init__(self, zones: Mapping[str, str], *, start_timeout: float = 20.0) -> None:
        self._knotd = require_binary("knotd", "knot")
        self._kdig = require_binary("kdig", "knot-dnsutils")
        if not zones:
            raise ValueError("KnotServer needs at least one zone")
        self.zones = {name.rstrip(".").lower(): text for name, text in zones.items()}
        self._start_timeout = start_timeout
        self.host = "127.0.0.1"
        self.port = 0
        self.directory = Path(tempfile.mkdtemp(prefix="smtpclient-knot-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.directory / "knot.log"

    def start(self) -> KnotServer:
        """Start knotd and wait until every zone answers SOA.

        Raises RuntimeError (with the log) if it does not.
        """
        if self._process is not None:
            return self
        try:
            zone_dir = self.directory / "zones"
            zone_dir.mkdir()
            for name, text in self.zones.items():
                (zone_dir / f"{name}.zone").write_text(text, encoding="utf-8")
            # The probed port is released before knotd binds it; another
            # process may take it meanwhile, so a bind failure is retried.
            for attempt in range(3):
                log_start = len(self.log())
                self.port = free_port(self.host, udp_too=True)
                conf = self.directory / "knot.conf"
                conf.write_text(self._config(zone_dir))
                self._launch(conf)
                if self._wait_ready():
                    return self
                self._stop_process()
                if not lost_port_race(self.log()[log_start:]) or attempt == 2:
                    raise RuntimeError(
                        f"knotd in {self.directory} did not answer on "
                        f"{self.host}@{self.port}; end of its log:\n{tail(self.log_path)}"
                    )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop knotd (and anything it forked) and remove its directory."""
        try:
            self._stop_process()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> KnotServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log(self) -> str:
        """knotd's log so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _config(self, zone_dir: Path) -> str:
        d = self.directory
        zone_entries = "".join(f"  - domain: {name}\n" for name in self.zones)
        # Few workers: a test server needs no parallelism. The zone file is
        # only read (never written back) and nothing is journaled, so tests
        # always see exactly the zone they passed in.
        return f"""\
server:
    rundir: "{d}"
    pidfile: "{d / "knot.pid"}"
    listen: {self.host}@{self.port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
control:
    listen: "{d / "knot.sock"}"
log:
  - target: "{self.log_path}"
    any: info
database:
    storage: "{d / "db"}"
template:
  - id: default
    storage: "{zone_dir}"
    file: "%s.zone"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
{zone_entries}"""

    def _launch(self, conf: Path) -> None:
        # Foreground child in its own session, so stop() can kill it all.
        with (self.directory / "knotd.out").open("ab") as out:
            self._process = subprocess.Popen(
                [self._knotd, "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _answers(self, zone: str) -> bool:
        try:
            result = subprocess.run(
                [
                    self._kdig,
                    f"@{self.host}",
                    "-p",
                    str(self.port),
                    "SOA",
                    zone,
                    "+timeout=1",
                    "+retry=0",
                    "+norecurse",
                ],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False
        return (
            result.returncode == 0
            and "status: NOERROR" in result.stdout
            and " SOA " in (result.stdout.replace("\t", " "))
        )

    def _wait_ready(self) -> bool:
        process = self._process
        assert process is not None
        pending = set(self.zones)

        def ready() -> bool:
            if process.poll() is not None:
                return True  # exited: stop waiting, report below
            # TCP accepting means the sockets are bound; only then ask over
            # UDP (a query sent earlier would be lost and cost a timeout).
            if not accepts(self.host, self.port):
                return False
            pending.difference_update({z for z in pending if self._answers(z)})
            return not pending

        wait_until(ready, self._start_timeout, interval=0.05)
        return process.poll() is None and not pending

    def _stop_process(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        kill_session(process.pid)
