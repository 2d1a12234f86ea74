"""The fault-injection ("chaos") suite: real worker processes under load, faults, an audit.

See docs/chaos.md. ``python -m tests.chaos`` runs it at full size and prints the table.
"""
