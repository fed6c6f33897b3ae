"""The WSGI app for gunicorn's command line (the Procfile's web line): settings from the environment."""
from .app import create_app
from .config import load_settings
from .startup import settled

app = create_app(load_settings())
settled()
