"""Small subcommands that belong to no single pipeline stage."""
