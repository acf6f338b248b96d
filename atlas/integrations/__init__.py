"""Ways to reach the memory where users already work: the MCP server (the LangGraph store adapter
needs nothing of atlas and lives in memory/langgraph_store.py)."""
