"""What a task may reach and what it may reveal: secrets in metadata, the egress policy."""
