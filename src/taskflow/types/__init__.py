"""Small value types shared by every layer (failures, notifiers, graphs, timing)."""
