"""Control of a running appliance, shared by the runner (which acts) and the admin page (which asks).

- ``commands``: operator requests as files in a directory (the page writes, the runner honours).
- ``preflight``: the go-live preflight's state record and the document the page shows.
- ``doctor``: the go-live checks themselves (``edge doctor``), run from the appliance host.
- ``sourcedoctor``: ``edge doctor --sources``, every source's ``probe.py`` bounded and scrubbed;
  ``probing``: what a probe returns; ``sourcereport``: the rows as a table, an exit code, a state record.

Nothing here imports ``edge.admin`` or Flask: the dependency points from the page to here.
"""
