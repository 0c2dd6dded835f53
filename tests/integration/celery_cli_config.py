"""Configuration of the ``celery`` command line in test_celery_cli: the module's own mailbox."""

control_exchange = "djtasks-celery-cli-tests"
