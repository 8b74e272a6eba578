"""The only places where mote reaches inside the libraries it builds on (one module per library).

Everything else in ``mote`` uses the libraries' public APIs (``tests/test_architecture.py`` checks it). Each
adapter names the private parts it uses and why no public API does the job; ``tests/test_adapters.py`` asserts
that every one of them still exists with the signature the adapter calls, so an upgrade that changes one fails
there, loudly, rather than somewhere deep in a run. The tested versions are pinned in ``pyproject.toml``.

=============================== ==================================================================================
module                          private parts
=============================== ==================================================================================
``mote.adapters.mteb``          the task classes' scoring steps (``_normalize``, ``_calculate_scores``,
                                ``_undersample_data``, ``_run_experiment``, ``_calculate_avg_scores``,
                                ``_compute_metrics``) and ``mteb._evaluators.retrieval_metrics``
``mote.adapters.transformers``  ``Trainer._run_epoch``, ``Trainer._get_output_dir``, ``Trainer._save_checkpoint``
``mote.adapters.encoder_        transformers' encoder loop (``encoder.layer[i](hidden, mask, ...)`` in order): the
prefix``                        layers before the first expert layer, computed once per batch during selection
``mote.adapters.sentence_       ``BaseModel._module_classes`` (module classes loadable without
transformers``                  ``trust_remote_code``)
=============================== ==================================================================================
"""
