"""The local backend: an OpenAI-compatible fine-tuning server that really trains, offline.

``LocalBackend`` runs the server in-process on a free port and gives a configured ``openai``
client; ``finetune_kit.local.server.serve`` runs it in the foreground (``finetune-kit local
serve``).
"""
