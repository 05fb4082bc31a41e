"""Benchmarks: smtpclient side by side with smtplib, aiosmtplib and Postfix's
smtp-source, against the same server in the same run.

Run ``python -m benchmarks --quick`` (about two minutes) or ``python -m
benchmarks`` (the full run); see benchmarks/README.md.  Not collected by
pytest: nothing here is named ``test_*``.
"""
