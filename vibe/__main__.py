"""`python -m vibe ...`: see vibe/cli.py."""
from .cli import main

raise SystemExit(main())
