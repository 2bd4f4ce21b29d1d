"""``python -m convzoo`` (and ``torchrun -m convzoo train ...``) runs the command-line app."""

from .cli import main

main()
