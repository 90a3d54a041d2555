"""The `decaylab` subcommands, one module each (``add_arguments(parser)``, ``main(args) -> int``),
registered in :data:`decaylab.cli.COMMANDS`."""
