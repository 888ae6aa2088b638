"""Local stand-ins and real servers that the tests and the benchmarks start on 127.0.0.1.

Both ``tests/`` and ``bench/`` import from here, and this package imports from neither, so a
benchmark never depends on the test suite (and the suite's helpers can change freely):

* ``fakes.cloudflare``: a strict fake of Cloudflare Workers AI, an OpenAI-compatible LLM and an
  Images API, in a thread (``start()``) or standalone (``python -m harness.fakes.cloudflare``);
* ``redis_server``: ``RedisServer``, a throwaway real ``redis-server`` (stop, restart, same port);
* ``s3_server``: ``MotoServer``, moto's S3 server in a process of its own;
* ``service``: ``start_service``, the real service under gunicorn (``gunicorn.conf.py``), and the
  variables that point it at the fake;
* ``ports``: ``free_port``.

Nothing here knows pytest: a missing ``redis-server`` is an exception (``RedisUnavailable``) that
the tests turn into a skip, or a failure under ``FLUX_REQUIRE_REDIS=1``.
"""
