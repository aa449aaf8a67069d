"""The ``bilevel`` command line."""
