"""The sans-IO core: bytes in, objects out.

Nothing in this package touches a socket, the clock, TLS or logging, so every
rule of the protocol can be tested with plain tables.  Import the submodules
directly (``from smtpclient.protocol.reply import ReplyParser``); this module
stays empty so that importing one of them never pulls in the others.
"""
