"""The gateway process: configuration, discovery, identity translation, updates, CLI."""
