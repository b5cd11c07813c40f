"""Brook server processes: storage node, coordinator, group manager, and shared plumbing."""
