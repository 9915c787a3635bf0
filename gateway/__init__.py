"""The Junction gateway: the Starlette app, its middleware chain and the command line."""

import router  # noqa: F401  (first: sets OpenBLAS's thread settings before numpy is imported)
