"""What clients talk to: gRPC services, and the command line."""
