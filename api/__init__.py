"""The ways in: the bikefleet command line (and, later, the HTTP service)."""
