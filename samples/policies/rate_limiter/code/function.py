"""rate_limiter: a fixed-window limiter whose counters live in the platform's `context`.

parameters: {"limit": 100, "window_seconds": 60}
input_data: {"client_id": "alice"}
-> {"allowed": bool, "client_id", "count": calls in this window including this one,
    "limit", "remaining", "retry_after_seconds"}
Counting in `context` (not on the instance) is what makes it correct across workers, restarts
and replicas: the platform loads context before eval and saves it after, one call per key at a time.
"""

import time


class AIOSv1PolicyRule:
    def __init__(self, rule_id, settings, parameters):
        self.rule_id = rule_id
        self.limit = int((parameters or {}).get("limit", 100))
        self.window = float((parameters or {}).get("window_seconds", 60))
        if self.limit < 1 or self.window <= 0:
            raise ValueError("limit must be >= 1 and window_seconds > 0")

    def eval(self, parameters, input_data, context):
        client = str((input_data or {}).get("client_id", "anonymous"))
        now = time.time()
        windows = context.setdefault("windows", {})
        window = windows.get(client)
        if window is None or now - window["start"] >= self.window:
            window = {"start": now, "count": 0}
        window["count"] += 1
        windows[client] = window
        # Forget clients whose window ended long ago so the context stays small.
        for other in [c for c, w in windows.items() if now - w["start"] >= 2 * self.window]:
            del windows[other]
        allowed = window["count"] <= self.limit
        return {
            "allowed": allowed,
            "client_id": client,
            "count": window["count"],
            "limit": self.limit,
            "remaining": max(0, self.limit - window["count"]),
            "retry_after_seconds": 0 if allowed else round(self.window - (now - window["start"]), 3),
        }

    def management(self, action, data):
        if action == "get_state":
            return {"limit": self.limit, "window_seconds": self.window}
        raise ValueError(f"unknown management action {action!r}; known: get_state")
