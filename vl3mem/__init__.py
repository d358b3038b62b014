"""The ``vl3mem`` command line: every layer's commands in one place (the top of the import graph)."""
