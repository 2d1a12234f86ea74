"""Hypothesis strategies shared by the tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def json_values(max_leaves: int = 8, max_text: int | None = None) -> st.SearchStrategy[Any]:
    """Any JSON value runnerq's encoder writes: finite numbers, text, lists and objects."""
    text = st.text(max_size=max_text)
    return st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | text,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
        max_leaves=max_leaves,
    )
