"""``python -m torchyard``: the same CLI as the ``torchyard`` command."""

from torchyard.cli import main

if __name__ == "__main__":
    main()
