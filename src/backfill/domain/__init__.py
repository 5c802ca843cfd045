"""Pure domain core: interval arithmetic, value objects, state transitions. No I/O."""
