"""Hypothesis strategies shared by the reference tests."""

from hypothesis import strategies as st

# Random shapes from (2, 1) to (8, 16, 7, 5): (N, C), (N, C, L) or (N, C, H, W).
shapes = st.tuples(st.integers(2, 8), st.integers(1, 16)).flatmap(
    lambda nc: st.one_of(
        st.just(nc),
        st.tuples(st.just(nc[0]), st.just(nc[1]), st.integers(1, 7)),
        st.tuples(st.just(nc[0]), st.just(nc[1]), st.integers(1, 7), st.integers(1, 5)),
    )
)
