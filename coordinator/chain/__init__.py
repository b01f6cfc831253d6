"""The coordinator and the EVM chain: the threaded chain client, the event watcher,
batched settlement and the billing rule mirrored from the contract."""
