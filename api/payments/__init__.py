"""Payment providers: one interface (`provider.py`), one module per processor."""
