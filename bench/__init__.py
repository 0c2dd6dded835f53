"""Benchmarks: djtasks against Celery 5 on the same brokers, pool and concurrency (``python -m bench``).

Nothing here is imported by djtasks. The orchestrator (``bench.suite``) imports neither Django
nor Celery: every worker and every client runs in a subprocess of its own, configured by its
environment, so that the two systems never share a process, a connection or a setting.
"""
