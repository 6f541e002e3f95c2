"""``umt serve``: the HTTP API and page (``app``), request checking (``intake``), dynamic
batching of concurrent requests (``batcher``) and the test-predictions view (``browse``)."""
