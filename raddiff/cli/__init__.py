"""The ``raddiff`` command line: :mod:`raddiff.cli.main` holds the subcommand table, one module per command group."""
