"""The ``serve deploy`` config of ``mote serve --write-config FILE``: the same application on a Ray cluster.

The file is Ray Serve's own config format (``ServeDeploySchema``): one application whose ``import_path`` is the
builder :func:`mote.serve.app.build_app` and whose ``args`` are the ``mote serve`` flags (:class:`ServeArgs`). On
the cluster: ``serve deploy FILE`` (or ``serve run FILE``); every node needs ``mote[serve]`` installed and the model
folder at the same path (or on shared storage).

Example:
    >>> text = deploy_config({"model": "/models/minilm-mote"}, host="0.0.0.0", port=8000)   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import yaml

APP_BUILDER = "mote.serve.app:build_app"


def deploy_config(args: dict[str, Any], host: str = "0.0.0.0", port: int = 8000, name: str = "mote") -> str:
    """YAML text of a ``serve deploy`` config running ``build_app(args)`` behind every node's HTTP proxy."""
    config = {
        "proxy_location": "EveryNode",
        "http_options": {"host": host, "port": int(port)},
        "applications": [{"name": name, "route_prefix": "/", "import_path": APP_BUILDER, "args": args}],
    }
    try:  # validated with Ray Serve's schema when Ray is installed here
        from ray.serve.schema import ServeDeploySchema

        ServeDeploySchema.model_validate(config)
    except ImportError:
        pass
    header = ("# Ray Serve config written by `mote serve --write-config`: run it on a Ray cluster with\n"
              "#   serve deploy THIS_FILE   (every node: pip install 'mote[serve]'; the model folder at this path)\n")
    return header + yaml.safe_dump(config, sort_keys=False)
