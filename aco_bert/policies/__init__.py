"""Routing policies: map calibrated P(success) and expected cost per tier to one tier per prompt."""
