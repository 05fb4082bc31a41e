"""Content streaming: moved to ``smtpclient.session.content``; these names
stay importable here."""

from smtpclient.session.content import BDAT_WINDOW, ContentSender

__all__ = ["BDAT_WINDOW", "ContentSender"]
