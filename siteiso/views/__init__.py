"""Views: holders, the index the entry reads, and converging them on state."""
