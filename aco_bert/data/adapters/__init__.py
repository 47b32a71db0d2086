"""Adapters: one module per published outcome format, each returning a validated :class:`OutcomeTable`."""
