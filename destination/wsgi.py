"""The WSGI app for gunicorn's command line (the Procfile's web line): settings from the environment."""
from destination.app import create_app
from destination.config import load_settings
from destination.startup import settled

app = create_app(load_settings())
settled()
