"""marketdata: replays real historical bars onto the bus and answers snapshot requests."""
