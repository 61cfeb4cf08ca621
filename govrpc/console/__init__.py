"""The governance console: a web page for operators over ``govrpc.Admin`` (``pip install govrpc[console]``).

Not on the call path: it reads and writes the registry as the ``govrpc``
command does (``govrpc console --registry URL --port 8080``). ``server`` runs
the stdlib's WSGI server on 127.0.0.1; ``app`` renders the pages (services,
rules with live checks and explain, history with rollback); ``auth`` is the
login and CSRF; ``history`` keeps every rule change in the registry.
No entry-point group; everything the page needs is packaged in ``static/``.
"""

from govrpc.console.app import ConsoleApp
from govrpc.console.auth import Login, hash_password
from govrpc.console.history import RuleHistory, Version
from govrpc.console.server import ConsoleServer

__all__ = ["ConsoleApp", "ConsoleServer", "Login", "RuleHistory", "Version", "hash_password"]
