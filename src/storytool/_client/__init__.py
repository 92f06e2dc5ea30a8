"""Private parts of :mod:`storytool.client`; import from there."""
