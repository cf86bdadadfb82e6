"""dateline: an event-sourced backend that tracks developing news stories."""
