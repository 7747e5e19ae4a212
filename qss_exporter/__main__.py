"""`python -m qss_exporter` is the `qss-exporter` command."""

import sys

from qss_exporter.cli import main

sys.exit(main())
