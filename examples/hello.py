# A first job: prints, uses an allowed module, and leaves a JSON result.
import json
import statistics

data = [3, 1, 4, 1, 5, 9, 2, 6]
print("hello from strictpy")
print("mean:", statistics.mean(data))
result = {"max": max(data), "sorted": sorted(data), "echo": json.loads('{"ok": true}')}
