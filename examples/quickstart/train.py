"""Fit a line with gradient descent; flags come from argparse."""

import argparse

import numpy as np

p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, default=0.05, help="Learning rate")
p.add_argument("--epochs", type=int, default=100, help="Passes over the data")
p.add_argument("--noise", type=float, default=0.1, help="Noise in the data")
p.add_argument("--seed", type=int, default=0)
args = p.parse_args()

rng = np.random.default_rng(args.seed)
x = rng.uniform(-1, 1, 200)
y = 3.0 * x + 0.5 + rng.normal(0, args.noise, x.size)
w, b = 0.0, 0.0
for epoch in range(args.epochs):
    err = w * x + b - y
    w -= args.lr * 2 * np.mean(err * x)
    b -= args.lr * 2 * np.mean(err)
    print(f"loss: {np.mean(err ** 2):.6f} (step {epoch})")
print(f"w: {w:.4f}")
print(f"b: {b:.4f}")
np.save("weights.npy", np.array([w, b]))
