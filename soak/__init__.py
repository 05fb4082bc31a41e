"""A fault-injecting soak test for smtpclient (``python -m soak --help``).

Not part of the quick test suite: run it by hand or on a schedule.
"""
