"""Integrations with frameworks; each module imports its framework itself,
so ``import smtpclient`` never needs them (``smtpclient.contrib.django``
needs the ``django`` extra)."""
