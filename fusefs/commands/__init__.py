"""The subcommands of ``fusefs``: one module per group, each command a ``cmd_*`` function beside the
``add_*_parser`` that declares its arguments (fusefs/cli.py lists them)."""
