"""Peer adapters: each runs in its library's own virtualenv as ``python -m benchmarks.peers.X``.

An adapter imports only the standard library, ``benchmarks.peers._common`` and its own library.
"""
