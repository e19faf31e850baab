"""Private plumbing for how calls run: compilation and caching, sharding over devices, PRNG keys."""
