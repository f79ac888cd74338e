"""Subcommands of the ``nas`` CLI, one module each (see ``nas.cli.COMMAND_MODULES``)."""
