"""Protobuf modules generated from the `.proto` files here (`make protos`); do not edit them."""
