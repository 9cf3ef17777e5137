"""Run the platform on this machine without Docker (make up / down / status / logs)."""
