"""The books on disk: their layout, all Beancount text, and the files themselves.

Imports only ``ledger_engine.core``: nothing here knows the store.
"""
