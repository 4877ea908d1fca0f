"""The ways in: the ``bikefleet`` command line and the HTTP service, thin adapters
over one use-case layer (``api.usecases``)."""
