"""Findings across flights: a site's flights matched into tracks, growth and early warning,
estimated energy loss (docs/history.md).

- :mod:`history.config`   ``configs/history.yaml`` and the per-site ``configs/sites.yaml``
- :mod:`history.match`    positions in metres, the flight's GPS bias, one-to-one assignment
- :mod:`history.rules`    growth, the "worsened" state, early-warning rules
- :mod:`history.loss`     estimated energy loss of PV findings
- :mod:`history.tracker`  building a site's tracks in the store, flight by flight
- :mod:`history.queries`  sites, flights, open findings with history, changes (JSON/GeoJSON/CSV)

Imports ``storage``, ``detector`` and ``configs`` only; the service (``serving``) and the
command (``pvwind``) use it.
"""
