"""Studies: a grid expanded into member specs (:mod:`.grid`), the members' table (:mod:`.table`)."""
