"""AutoSCOPE Studio: the local web app over every stage (FastAPI + Jinja2, vendored OpenSeadragon).

It holds no state of its own: pages read the same stores through the same library functions as
the CLI's views, and long work runs as background jobs of the real CLI (`autoscope.studio.jobs`).
"""
