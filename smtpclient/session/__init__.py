"""The engine: one SMTP (or LMTP) conversation, whichever face drives it.

``Session`` (``from smtpclient.session import Session``) is the public face;
``Mailer``, ``send()``, ``deliver()``, the CLI and the framework backends
all drive one.  Under it every piece of state has one owner, and imports go
one way (down this list):

``facade``       ``Session``: the thread guard, fork safety, the public
                 methods; owns a ``Channel``, the ``ConnectOptions`` it was
                 opened with, what EHLO offered and the ``SendConfig``.
``batch``        ``send_many`` on one channel: pipelining across messages.
``fastpath``     ``sendmail`` for a plain message: the same bytes and rules
                 as the general path with a fraction of its Python work;
                 hands over to ``transaction`` at the first unusual reply.
``plain``        the plain-message rules ``fastpath`` and ``batch`` share
                 (its MAIL/RCPT lines, or the ``Plan`` ``build_plan`` makes).
``transaction``  MAIL, RCPT, DATA/BDAT with pipelining and recipient
                 batches, and the one-write MAIL+RCPT+``BDAT LAST`` group
                 (``one_trip_fits``); ``content`` streams the message,
                 ``outcome`` adds a message's transactions up into its
                 ``SendResult``.
``opening``      connect, greeting, EHLO, the TLS mode's procedure; returns
                 what it learnt (``Opened``, a ``TLSOutcome``).
``auth``         SMTP AUTH (RFC 4954) on a channel.
``config``       ``SendConfig`` and ``TLSOutcome``: frozen values passed down.
``channel``      ``Channel``: the connection, the reply parser, the session
                 state (changed only through ``protocol.state.TRANSITIONS``),
                 every deadline, the unsolicited-data check and the
                 transcript.  Nothing but the channel touches the socket.

Below the engine: ``protocol/`` (sans-IO: replies, commands, content
encoding, the state and answer tables), ``plan`` (what is decided before
MAIL: the encoded envelope, the size rule, the framing), ``transport``,
``tls`` and ``timeouts``.  No module reads or writes another module's
underscore names (ruff SLF001).
"""

from smtpclient.session.facade import Session

__all__ = ["Session"]
