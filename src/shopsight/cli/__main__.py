"""``python -m shopsight.cli``."""

from shopsight.cli import main

main()
