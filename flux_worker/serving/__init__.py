"""Running the service: gunicorn's settings, the start-up check, and the `flux-worker` command.

Nothing else in the package imports this one; gunicorn (through gunicorn.conf.py) and the
command line do.
"""
