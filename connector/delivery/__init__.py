"""Getting envelopes to the API: batching, the HTTP client, tokens, and reading the answers."""
