"""ledger-engine: usage events in, balanced Beancount books out."""

__version__ = "0.1.0"
