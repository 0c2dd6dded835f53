#!/usr/bin/env python
"""Django's command-line utility for the demo project (and any djtasks command)."""

import os
import sys
from pathlib import Path

# The demo app is importable as "demo" (task names read demo.tasks.add, as in the docs).
sys.path.insert(1, str(Path(__file__).resolve().parent / "demo_project"))

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
