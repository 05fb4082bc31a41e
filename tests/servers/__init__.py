"""Real servers for the tests, started on loopback addresses only."""
