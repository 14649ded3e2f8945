"""Helpers that upstream TaskFlow's examples import from ``taskflow.tests`` (see ``utils``)."""
