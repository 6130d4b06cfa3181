"""Task plugins shipped with ftk; each registers itself like a third-party plugin."""
