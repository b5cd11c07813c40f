"""Brook clients: Producer, Consumer, Admin, and the `brook` CLI."""
