"""emissions: CO2 and pollutants avoided per ride, carbon points, ESG reports.

Factors and rules are data (``emissions/factors/``, ``settings.toml``); credits
are exact integers (``emissions.credit``); the append-only, hash-chained,
idempotent ledger lives in ``emissions.ledger``; reduction reports are built and
reconciled in ``emissions.report`` and rendered in ``emissions.render``.
"""
