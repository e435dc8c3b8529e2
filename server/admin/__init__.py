"""The admin console at /admin: server-rendered pages over the same domain flows as the API.

``server.admin.setup.setup_admin`` wires it into the app. This module stays empty so that
``server.keys`` can import the session store without pulling in the pages (which import the
keys themselves).
"""
