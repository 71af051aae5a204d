"""`python -m tessera_client.cli`: the same as the `tessera` command."""

from tessera_client.cli import run

run()
