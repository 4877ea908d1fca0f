"""The use cases: one plain function per job a user runs, over a ``Store``.

The CLI commands (``api/cli.py`` and friends) and the HTTP routes
(``api/routes/``) are thin adapters over these: they parse, call one use case,
and format. Use cases read and write through the package stores, pass the
packages' functions to each other (e.g. the planner's plans to the emissions
report), and are the only code under ``api/`` besides the stores that touches a
database.

=====================  ==============================================================
module                 use cases
=====================  ==============================================================
``store``              ``Store.open`` (the store handle), worker snapshots
``fleet``              ingest files, compute cells, snapshot, demand, cities
``rides``              ingest rides sent over HTTP (one or a batch)
``zones``              load zones (file or document), zone state, check points,
                       export GBFS, audit parking
``plans``              plan a day, plan jobs, solve a published instance
``carbon``             credit, reverse, redeem, rider points, verify the ledger,
                       emissions report
``keys``               create, list and revoke API keys; check presented keys
=====================  ==============================================================
"""
