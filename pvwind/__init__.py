"""The ``pvwind`` command: one module per sub-command in :mod:`pvwind.commands`.

The only package that sees all the others: ``detector`` (inference) at the bottom,
``storage`` on it, ``serving`` and ``rescore`` on storage, ``training`` on ``detector``.
See docs/architecture.md.
"""
