"""Serving one engine over the OpenAI API: the FastAPI app, the scheduler, the metrics."""
