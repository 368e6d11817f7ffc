#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    """Run administrative tasks."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "graphwiz.settings")
    import django
    from django.core.management import execute_from_command_line

    from graphwiz.startup import exit_on_bad_configuration

    with exit_on_bad_configuration():
        django.setup()  # reads the environment: a bad value stops here, in one line
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
