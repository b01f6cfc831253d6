"""Which providers may take a job: the provider book (live, signed adverts held against
the chain), its columns, what a job requires, and the matcher that filters and ranks."""
