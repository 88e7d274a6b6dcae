"""The REST API (`python -m vibe serve`): a FastAPI app over the same bundle the dashboard and CLI use, whose forward
passes are batched across concurrent requests, with a bounded queue, hot reload of a published rebuild, and limits."""
