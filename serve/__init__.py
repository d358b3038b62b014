"""``vl3mem serve``: one model, many streaming sessions, over HTTP, with a browser page.

Layers: :mod:`serve.sessions` (the sessions, each with its own memory, behind one model lock),
:mod:`serve.app` (the FastAPI routes, limits and errors), ``static/index.html`` (the page),
:mod:`serve.cli` (the command).
"""
