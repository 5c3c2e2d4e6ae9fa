"""The web console: server-rendered pages over the same views and write path as the HTTP API.

Mounted by the api role under `/console` (`services/api/app.py`); see `app.create_console`.
"""
