"""``python -m mnemo.cli``: the ``mnemo`` command, for when its script is not on the PATH."""

from . import main

main(prog_name="mnemo")
