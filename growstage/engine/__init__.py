"""Planning and carrying out a transfer: options, sources, the plan, the report, the writes."""
