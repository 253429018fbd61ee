"""The pure ground floor: records, vocabulary, money, dates, accounts and the stages that
derive books from events (events, rating, wallet, planner).

Nothing in this package touches SQLite, files or the clock, and it imports nothing outside
itself except ``ledger_engine.rules`` (the plan catalogue, also pure); ``tests/test_layers.py``
enforces that.
"""
