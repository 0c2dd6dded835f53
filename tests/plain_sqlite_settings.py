"""The test suite's settings with SQLite as ``startproject`` writes it: no WAL, no options.

Used by the processes of tests/integration/test_database_outages.py, to show that djtasks
works for a new user's project as it comes. The file is DJTASKS_TESTS_PLAIN_SQLITE_PATH.
"""

import os

from tests.settings import *  # noqa: F403 - the suite's settings, but for the databases

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.environ["DJTASKS_TESTS_PLAIN_SQLITE_PATH"]}}
DATABASE_ROUTERS = []
