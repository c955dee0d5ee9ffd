"""
The ``ssl-obstacle`` subcommands that live in modules of their own, one module per command.

Each module has ``add_arguments(parser)`` and ``run(args)`` (``up``: ``run(args, extra)``)
and keeps to the command's side of the work: options, printing, and the files it writes.
The method they apply lives in ``core/`` (``core/training.py``, ``core/evaluation.py``, …);
``plots.py`` holds the figures and the atomic JSON writer the commands share. ``cli.py``
wires the modules into argparse and loads each on use.
"""
