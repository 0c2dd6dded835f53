"""Settings of the e2e tier's runserver: the test suite's, served as a project serves its admin.

The same databases and routers as tests/settings.py (the workers use that module), plus
what a browser needs: the admin's static files, allowed hosts, the CSRF middleware, and
server errors written to stderr so that a failing test shows the traceback.
"""

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS, LOGGING, MIDDLEWARE

INSTALLED_APPS = [*INSTALLED_APPS, "django.contrib.staticfiles"]
STATIC_URL = "/static/"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    *MIDDLEWARE[:1],  # sessions, before CSRF reads them
    "django.middleware.csrf.CsrfViewMiddleware",
    *MIDDLEWARE[1:],
]
LOGGING = {**LOGGING, "loggers": {
    **LOGGING["loggers"],
    "django.request": {"handlers": ["console"], "level": "ERROR"},
}}
