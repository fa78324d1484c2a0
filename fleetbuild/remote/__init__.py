"""Code that runs on build hosts and devices: standard library only, Python >= 3.6.

Shipped to hosts as one zipapp (`fleetbuild.build.bundle.build_zipapp`), where this package is named
`fleetbuild_remote`; the controller imports it as `fleetbuild.remote`. Modules here use relative
imports only and nothing newer than Python 3.6 (checked by vermin in the tests).
"""

PROTOCOL_VERSION = 1
