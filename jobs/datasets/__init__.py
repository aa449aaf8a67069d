"""Uploaded data sets: their files (:mod:`.files`) and the rules an upload meets (:mod:`.checks`).

No numpy here: the API streams a file once, array by array.
"""
