"""The API's routes, one router per subject; :func:`clipseek.server.app.create_app`
includes them in this order. Each route is a plain ``def`` where it touches the model,
the store or the disk, so FastAPI runs it in its thread pool."""
