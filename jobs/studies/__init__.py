"""Studies: a grid, its table, and a search.

A grid expanded into member specs (:mod:`.grid`), the members' table (:mod:`.table`), and
a search's members asked of a sampler (:mod:`.search`).
"""
