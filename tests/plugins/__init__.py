"""Test plugins: small modules registered by fixtures or fake entry points."""
