"""``python -m aco_bert.serve --bundle DIR [--host 127.0.0.1] [--port 8000] [--workers N] [--config serve.yaml]``.

``python -m aco_bert.serve hash-key`` reads a client API key on stdin and prints the sha256 for ``api_key_hashes``.

Any other ``--key value`` overrides a :class:`~aco_bert.serve.config.ServeConfig` field (e.g. ``--microbatch true
--max_body_bytes 2000000``). The bundle is loaded and verified before the port is bound, so a bad bundle fails
the command with a clear message instead of serving 503s.
"""

from __future__ import annotations

import os
import sys

from aco_bert.config import CliError, build_parser, flag_values
from aco_bert.serve.config import ENV_PREFIX, ServeConfig, load_serve_config

PROG = "python -m aco_bert.serve"


def build_cli():
    """Every :class:`ServeConfig` field as a flag (generated), plus ``--bundle`` and ``--config serve.yaml``."""
    p = build_parser(ServeConfig, PROG, __doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True, help="bundle directory written by `python -m aco_bert.export`")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["hash-key"]:
        from aco_bert.serve.auth import hash_key_main

        return hash_key_main(argv[1:])
    try:
        ns = vars(build_cli().parse_args(argv))
        bundle, path = ns.pop("bundle"), ns.pop("config", None)
        overrides = flag_values(ServeConfig, ns)
        config = load_serve_config(path, overrides)
        from aco_bert.serve.auth import load_key_hashes

        load_key_hashes(config.api_key_hashes, config.api_keys_file)  # a bad hash/file fails before binding
    except CliError as e:
        print(str(e), file=sys.stderr)
        return 2
    except (ValueError, OSError) as e:
        print(f"aco_bert.serve: bad configuration: {e}", file=sys.stderr)
        return 2

    from aco_bert.types import BundleError
    from aco_bert.serve.app import create_app, load_router

    try:
        router = load_router(bundle, config)  # fail before binding the port
    except (BundleError, OSError, ValueError) as e:
        print(f"aco_bert.serve: cannot load bundle {bundle}: {e}", file=sys.stderr)
        return 2

    from aco_bert.serve.server import serve

    if config.workers == 1:
        try:
            app = create_app(router, config)
        except ValueError as e:
            print(f"aco_bert.serve: bad configuration: {e}", file=sys.stderr)
            return 2
        serve(config, app)
        return 0
    # Several processes: each worker loads the bundle itself (ONNX sessions are not shared across processes).
    del router
    os.environ["ACO_SERVE_BUNDLE"] = os.path.abspath(bundle)
    if path:
        os.environ["ACO_SERVE_CONFIG_PATH"] = os.path.abspath(path)
    for k, v in overrides.items():
        os.environ[ENV_PREFIX + k.upper()] = ",".join(v) if isinstance(v, list) else str(v)
    serve(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
