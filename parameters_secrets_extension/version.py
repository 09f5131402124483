"""The extension's name and version: the one place both are written (build_layer reads them too)."""

NAME = "parameters-secrets-extension"
VERSION = "0.1.0"
