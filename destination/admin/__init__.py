"""Beside the pipeline, for admins: the /admin JSON API, its web page, and replay of dead letters.

May import every stage, as the top-level app does; no stage imports it.
"""
