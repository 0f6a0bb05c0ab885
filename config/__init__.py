"""The TOML profiles and the typed loader that reads them."""
