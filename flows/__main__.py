"""`python -m flows`: runs the winnow command line."""

from flows.cli import main

main()
