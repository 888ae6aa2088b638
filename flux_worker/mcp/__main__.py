"""`python -m flux_worker.mcp`: the MCP tools over stdio, for clients that launch a command.

The configuration is read from the same environment variables as the HTTP service. Links to
full images use PUBLIC_BASE_URL (an HTTP service of the same storage serves them there) or the
bucket (IMAGE_LINKS=direct/presigned); without either, each full image is also written to a file
in the temp folder and linked as a `file:` URL, which is what a local agent can open.
"""

from __future__ import annotations

import logging
import os
import pathlib
import secrets
import sys
import tempfile
from typing import Callable, Mapping

import anyio
from mcp.server.stdio import stdio_server

from .. import logs
from ..config import Config, ConfigError
from ..generation.job import ImageResult
from ..services import build_services
from .caller import ToolCaller
from .server import build_server
from .tools import ImageTools

log = logging.getLogger("flux_worker.mcp")

LinkFn = Callable[[ImageResult], str]
_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}


def stdio_config(environ: Mapping[str, str]) -> Config:
    """The configuration for a stdio server; raise ConfigError like the HTTP service."""
    env = dict(environ)
    # Only the process that launched this server can talk to it, so client keys protect
    # nothing here; a real backend still insists on one, so an unset API_KEY gets a throwaway.
    env.setdefault("API_KEY", "stdio-" + secrets.token_hex(16))
    return Config.from_env(env)


def file_link(folder: pathlib.Path) -> LinkFn:
    """A link maker that writes each full image into `folder` and returns its `file:` URL."""

    def link(result: ImageResult) -> str:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{result.key}.{_EXTENSIONS.get(result.content_type, 'img')}"
        path.write_bytes(result.data)
        return path.resolve().as_uri()

    return link


async def serve(config: Config) -> None:
    """Serve the tools over stdin/stdout until the client closes them."""
    services = build_services(config)
    # Links need someone to serve the image: the HTTP service at PUBLIC_BASE_URL, or the bucket
    # (IMAGE_LINKS=direct/presigned). Without either, the local user gets a file.
    served = bool(config.public_base_url) or config.image_links != "service"
    link = ((lambda result: services.links(config.public_base_url, result.key)) if served
            else file_link(pathlib.Path(tempfile.gettempdir()) / "flux-worker-mcp"))
    tools = ImageTools(services)
    server = build_server(tools, lambda ctx: ToolCaller(identity="stdio", link=link,
                                                    links_expire=served, key_proved=True))
    try:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())
    finally:
        services.close()


def main() -> None:
    """Read the configuration and serve; a bad configuration exits 4 with a one-line reason."""
    try:
        config = stdio_config(os.environ)
    except ConfigError as exc:
        print(f"flux-worker: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(4) from None
    logs.configure(config.log_level, config.secrets())  # logs go to stderr, never stdout
    log.info("flux-worker MCP server on stdio: backend=%s", config.image_backend)
    anyio.run(serve, config)


if __name__ == "__main__":
    main()
