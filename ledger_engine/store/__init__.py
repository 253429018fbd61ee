"""The store (``state.sqlite``): schema, views and every query the engine runs.

Imports only ``ledger_engine.core``: nothing here knows the journal files.
"""
