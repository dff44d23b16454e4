"""Module-global flags: guild sets them before the script runs."""

samples = 100
scale = 2.5
name = "data"

import json

data = [i * scale for i in range(samples)]
with open(f"{name}.json", "w") as f:
    json.dump(data, f)
print(f"wrote {samples} samples to {name}.json")
print(f"total: {sum(data)}")
