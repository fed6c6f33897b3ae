"""The app with a store that does nothing, served by bench/accept_path.py only.

It answers as the app does, but keeps nothing it accepts: never deploy it. It is the ceiling of
the accept path's Python work (receive, parse, map, validate, answer), so the share of the gap to
the relay that the store causes is measured, not guessed.
"""
from destination.wsgi import app

app.extensions["destination"].queue.enqueue = lambda *args, **kwargs: 0
