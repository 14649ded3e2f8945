"""Helpers shared by taskflow's modules (threads, URIs, reflection...); not a public API."""
