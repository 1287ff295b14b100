"""The officer's phone app: a small web app served by the node daemon on a loopback-only port.

``server.py`` (the listener and the page), ``routes.py`` (the JSON API), ``guard.py`` (session
token, Host and Origin checks, PIN unlock and idle lock), ``checks.py`` (the live C.Hasil rule
check), ``drafts.py`` (drafts kept in the node's store as the officer types), ``enroll.py``
(enrollment with the KPU's provisioning file), ``qr.py`` (the chair's QR code), ``port.py`` (the
one door into the relay layer), ``errors.py`` (the package's exception root), ``messages/`` (one
catalog per language) and ``static/`` (the page: HTML, CSS and JS, no external asset).
"""
