"""End-to-end tests: the whole market on one devnet, driven through the CLI and the daemons."""
