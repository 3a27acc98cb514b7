"""``pvwind`` sub-commands. Each module defines ``add_arguments(parser)`` and
``run(args) -> int`` and imports its libraries lazily, so ``pvwind inspect`` and
``pvwind serve`` run without the training extras."""
