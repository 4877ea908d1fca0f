"""The ops console: web pages under ``/ops/`` served by the same service.

``routes`` signs people in with an API key (kept in an HttpOnly, SameSite=Strict
cookie) and serves the page shells; the pages' script (``static/ops.js``) reads
the same ``/v1`` endpoints the API documents, so a page shows what the API
answers. ``sheets`` renders a truck's driver sheet (HTML to print, or PDF).
Third-party assets (Leaflet) are pinned in ``package.json`` and copied into
``static/vendor`` by ``scripts/vendor-assets``: nothing loads from a CDN.
"""
