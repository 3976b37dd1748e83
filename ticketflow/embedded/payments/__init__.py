"""The embedded payment processor: localstripe, patched by `fake_stripe`, on 127.0.0.1."""

HEALTH_PATH = "/_config/health"  # localstripe lets /_config/* through without an API key
