"""``pvwind serve``: run the inspection service."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from serving.auth import KeyConfigError, KeyStore, hash_key, new_key
from serving.settings import Settings, is_loopback

log = logging.getLogger("pvwind.serve")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run the inspection service (OpenAPI docs at /docs). Every option also has an environment "
        "variable PVWIND_<OPTION>; see docs/serving.md for all settings and their defaults."
    )
    parser.add_argument("--host", help="address to bind (default 127.0.0.1; others need API keys)")
    parser.add_argument("--port", type=int, help="port (default 8000)")
    parser.add_argument("--model", type=Path, help="model directory or .onnx file (default models/current)")
    parser.add_argument("--detector-config", type=Path, help="detector settings YAML (default configs/detector.yaml)")
    parser.add_argument("--database-url", help="SQLAlchemy URL (default sqlite:///var/pvwind.db)")
    parser.add_argument("--api-keys-file", type=Path, help="file with one API key or sha256:<hex> hash per line")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--new-key", action="store_true", help="print a new random API key and the hash to configure, then exit"
    )


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        k: v
        for k, v in {
            "host": args.host,
            "port": args.port,
            "model": args.model,
            "database_url": args.database_url,
            "detector_config": args.detector_config,
            "api_keys_file": args.api_keys_file,
        }.items()
        if v is not None
    }
    try:
        return Settings(**overrides)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        from pvwind.cli import CLIError

        raise CLIError(f"invalid setting {where} (PVWIND_{where.upper()}): {err['msg']}") from None


def check_startup(settings: Settings) -> KeyStore:
    """Refuse unsafe or impossible configurations with one clear line."""
    from pvwind.cli import CLIError

    try:
        keys = KeyStore.load(settings.api_keys, settings.api_keys_file)
    except KeyConfigError as e:
        raise CLIError(str(e)) from None
    if not keys.enabled and not is_loopback(settings.host):
        raise CLIError(
            f"refusing to listen on {settings.host} without API keys; set PVWIND_API_KEYS or --api-keys-file "
            "(make a key with `pvwind serve --new-key`), or bind to 127.0.0.1"
        )
    if settings.detector_config is not None and not settings.detector_config.is_file():
        raise CLIError(f"detector config not found: {settings.detector_config}")
    model = settings.model
    if not model.exists():
        raise CLIError(f"model not found: {model} (set --model or PVWIND_MODEL; models/current is the default)")
    if model.is_dir() and not (model / "model.onnx").is_file():
        raise CLIError(f"no model.onnx in {model}")
    return keys


def run(args: argparse.Namespace) -> int:
    if args.new_key:
        key = new_key()
        print(
            f"key:  {key}\nhash: {hash_key(key)}\nGive the key to the client; configure the hash in PVWIND_API_KEYS "
            "or the --api-keys-file."
        )
        return 0
    settings = _settings(args)
    keys = check_startup(settings)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if keys.enabled:
        log.info("API keys: %d configured; /v1 needs 'Authorization: Bearer <key>' or 'X-API-Key'", len(keys.hashes))
    else:
        print(
            f"pvwind serve: no API keys configured, so the service accepts requests only from this machine "
            f"({settings.host}); set PVWIND_API_KEYS or --api-keys-file to serve a network",
            file=sys.stderr,
        )
    import uvicorn

    from serving.app import create_app
    from serving.http import protocol_class

    app = create_app(settings, keys=keys)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        http=protocol_class(settings.header_timeout_seconds),  # type: ignore[arg-type]
        log_level=args.log_level,
        timeout_graceful_shutdown=10,
        access_log=args.log_level == "debug",  # query values masked (serving.app.RedactQuery)
        proxy_headers=False,  # the client address is the connection's; see require_key for proxies
    )
    return 0
