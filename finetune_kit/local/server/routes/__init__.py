"""The HTTP routes of the local backend: one router per OpenAI resource, and the fault admin."""
