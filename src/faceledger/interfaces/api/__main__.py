"""``python -m faceledger.interfaces.api``: the ``serve`` command on its own (same options)."""

from faceledger.interfaces.cli.serve import serve_command

if __name__ == "__main__":
    serve_command(prog_name="python -m faceledger.interfaces.api")
