"""Settings modules: ``base`` (shared), ``local`` (make run), ``test`` (make test), ``production``.

``manage.py``, wsgi and Celery default to ``production``, which refuses to start
without a real ``DJANGO_SECRET_KEY``: secure unless a local mode is asked for.
"""
