"""The WSGI app for gunicorn's command line (the Procfile's web line): settings from the environment."""
from .app import create_app
from .config import load_settings

app = create_app(load_settings())
