"""``python -m faceledger.interfaces.cli``: the ``faceledger`` command."""

from faceledger.interfaces.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
