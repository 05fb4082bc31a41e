"""TLS housekeeping records are not replies.

Under TLS 1.3 the server sends session tickets after the handshake; until
the client reads them its socket is readable although no application data
is there.  The check for unsolicited replies must not take that for a
reply (a false ProtocolError) nor wait for data that is not coming.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time

from servers.tlsfaults import TestCA

from smtpclient.protocol.state import Stage
from smtpclient.timeouts import Deadline
from smtpclient.transport import Transport


def test_a_session_ticket_alone_reads_as_no_data() -> None:
    ca = TestCA()
    server_context = ca.leaf("localhost").server_context()
    server_context.minimum_version = ssl.TLSVersion.TLSv1_3
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    served: list[ssl.SSLSocket] = []
    go_on = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        tls = server_context.wrap_socket(conn, server_side=True)  # sends tickets after the handshake
        served.append(tls)
        go_on.wait(10)
        tls.sendall(b"220 ready\r\n")

    thread = threading.Thread(target=serve)
    thread.start()
    transport = Transport.connect(
        "127.0.0.1", port, per_address=5, deadline=Deadline(10, Stage.CONNECT)
    )
    try:
        transport.start_tls(ca.client_context(), "localhost", Deadline(10, Stage.STARTTLS))
        assert transport.tls is not None and transport.tls.version == "TLSv1.3"
        end = time.monotonic() + 5
        while not transport.readable() and time.monotonic() < end:
            time.sleep(0.01)
        assert transport.readable()  # the tickets are there...
        assert transport.read_now(Stage.MAIL) is None  # ...and they are not data
        go_on.set()
        assert transport.recv(Deadline(5, Stage.GREETING)) == b"220 ready\r\n"
    finally:
        go_on.set()
        thread.join(10)
        transport.close()
        for tls in served:
            tls.close()
        listener.close()
