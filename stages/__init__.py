"""One module per command, each ``run(request, console=None)``; requests in ``umt.stages.requests``."""
