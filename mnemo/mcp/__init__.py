"""Mnemo as an MCP server: the memory operations as tools for any agent or assistant.

Each tool is one operation of openapi.yaml under a name a model can use well; its input schema
is that operation's own parameters and body, read through mnemo.contract, and a call runs the
operation's handler, as Connexion would, so the REST API and the tools share one code path,
one set of rules about whose memories a caller reaches, and one wording of every error.

``mnemo.mcp.http`` serves the tools at ``/mcp`` of the REST server (streamable HTTP, stateless);
``mnemo.mcp.stdio`` serves them over standard input and output (``mnemo mcp``).
"""
