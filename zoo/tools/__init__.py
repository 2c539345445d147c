"""`zoo <tool>` subcommands: each module has `main(argv: list[str] | None = None) -> int`."""
