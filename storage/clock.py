"""The log engine's clock is Brook's one injected clock (`brook.clock`).

Re-exported here so the engine's modules keep one import; the log engine reads only
`now_ms()` (segment age, retention, time-based flushing).
"""

from brook.clock import Clock, ManualClock, SystemClock

__all__ = ["Clock", "ManualClock", "SystemClock"]
