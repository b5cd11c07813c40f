"""Plumbing shared by Brook gRPC servers: server lifecycle and error mapping."""
