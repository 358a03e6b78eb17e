"""Pure PyTorch genre models: no Django imports anywhere under ml/engine/."""
