"""``mote serve``: one MoTE model, every task, one OpenAI-compatible endpoint, on Ray Serve (``mote[serve]``).

One idea per module:

* :mod:`mote.serve.api` -- the HTTP contract: request / response schemas (pydantic), task names (Cohere's
  ``input_type`` or mote's), the checks that turn bad input into a 400 / 413 with a one-line message;
* :mod:`mote.serve.backends` -- what a replica holds: a MoTE, TLR or TSEmbed folder, a dense export (torch) or a
  multi-task / dense ONNX export, each answering ``embed(texts, tasks)`` in ONE forward, whatever the tasks mix;
* :mod:`mote.serve.app` -- the Ray Serve deployment (FastAPI ingress, ``@serve.batch`` dynamic batching, bounded
  queue) and ``build_app``, the application builder that ``serve deploy`` configs name;
* :mod:`mote.serve.gate` -- the gate that makes a replica's next batch every request that came while it was busy;
* :mod:`mote.serve.config` -- the ``serve deploy`` config file ``mote serve --write-config`` writes;
* :mod:`mote.serve.cli` -- the ``mote serve`` verb (local Ray, signals, clean shutdown).

Importing this package imports neither Ray nor torch; :mod:`mote.serve.app` imports Ray.
"""
