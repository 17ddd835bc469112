"""Request body size caps per route class, checked before a route parses anything.

| class  | routes                                                     | cap     |
|--------|------------------------------------------------------------|---------|
| auth   | /api/v1/auth/...                                           | 16 KiB  |
| bulk   | catalog and store imports, inventory levels and movements, | 16 MiB  |
|        | reported interactions                                      |         |
| other  | everything else (a checkout of 500 lines is ~40 KB)        | 1 MiB   |

A body past its cap is a 413 at once from its Content-Length, or as soon as a chunked body
grows past it, without reading the rest (a 12 MB array used to be parsed for 4.4 s first).
Enforced by FastAPI's own ``max_body_size`` (Starlette's RequestBodyLimitMiddleware): the
app's default in `create_app`, the auth router's and the bulk routes' where they are declared.
"""

from __future__ import annotations

KIB, MIB = 1024, 1024 * 1024
AUTH_MAX = 16 * KIB
BULK_MAX = 16 * MIB
DEFAULT_MAX = 1 * MIB
