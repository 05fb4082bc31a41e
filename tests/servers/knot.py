"""A throwaway Knot DNS authoritative server on 127.0.0.1, for resolver tests.

    with KnotServer({"example.test": example_zone()}) as knot:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = knot.port

The server answers on one free port over UDP and TCP; everything it writes
(config, zone files, database, pid file, log) is in its own temp directory.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

from ._proc import ChildServer, accepts, free_port, require_binary

__all__ = ["ZONES_DIR", "KnotServer", "example_zone"]

ZONES_DIR = Path(__file__).parent / "zones"


def example_zone() -> str:
    """The project's test zone for ``example.test`` (see the comments in it)."""
    return (ZONES_DIR / "example.test.zone").read_text(encoding="utf-8")


class KnotServer(ChildServer):
    """``knotd`` serving ``zones`` ({zone name: zone file text}) on 127.0.0.1.

    Arguments: ``zones``; keyword ``start_timeout`` (seconds).
    Attributes: ``host`` ("127.0.0.1"), ``port`` (UDP and TCP),
    ``directory``, ``zones``. Methods: ``start()``, ``stop()``, ``log()``.
    """

    name = "knotd"

    def __init__(self, zones: Mapping[str, str], *, start_timeout: float = 20.0) -> None:
        self._knotd = require_binary("knotd", "knot")
        self._kdig = require_binary("kdig", "knot-dnsutils")
        if not zones:
            raise ValueError("KnotServer needs at least one zone")
        self.zones = {name.rstrip(".").lower(): text for name, text in zones.items()}
        self.host = "127.0.0.1"
        self.port = 0
        super().__init__("smtpclient-knot-", start_timeout)

    @property
    def log_path(self) -> Path:
        """knotd's log (``log()`` returns what is in it so far)."""
        return self.directory / "knot.log"

    @property
    def zone_dir(self) -> Path:
        return self.directory / "zones"

    # start() (ManagedServer) waits until every zone answers SOA.
    def _prepare(self) -> None:
        self.zone_dir.mkdir()
        for name, text in self.zones.items():
            (self.zone_dir / f"{name}.zone").write_text(text, encoding="utf-8")

    def _start_once(self) -> str | None:
        self.port = free_port(self.host, udp_too=True)
        conf = self.directory / "knot.conf"
        conf.write_text(self._config())
        self._launch([self._knotd, "-c", str(conf)], self.directory / "knotd.out")
        pending = set(self.zones)

        def all_zones_answer() -> bool:
            # TCP accepting means the sockets are bound; only then ask over
            # UDP (a query sent earlier would be lost and cost a timeout).
            if not accepts(self.host, self.port):
                return False
            pending.difference_update({z for z in pending if self._answers(z)})
            return not pending

        if self._wait_running(all_zones_answer):
            return None
        return f"did not answer on {self.host}@{self.port}"

    def _config(self) -> str:
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
    storage: "{self.zone_dir}"
    file: "%s.zone"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
{zone_entries}"""

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
