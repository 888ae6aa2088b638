"""MCP server: image generation as tools for agents (Claude, Cursor, Cherry Studio, ...).

`tools` holds the tools (no Flask, no event loop), `server` the SDK server over them, `bridge`
the streamable HTTP transport for the WSGI app (mounted at `/mcp` by `web.mcp`), and
`python -m flux_worker.mcp` serves the same tools over stdio.
"""
