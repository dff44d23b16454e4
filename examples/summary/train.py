"""A stand-in for training: the loss falls faster for some learning rates."""

import math

lr = 0.1
epochs = 5

loss = 1.0
for epoch in range(epochs):
    loss *= math.exp(-lr * 5) + 0.3 * abs(math.log10(lr) + 1) / epochs
    print(f"epoch: {epoch}")
    print(f"loss: {loss:.6f}")

with open("model.txt", "w") as f:
    f.write(f"lr={lr} loss={loss:.6f}\n")
