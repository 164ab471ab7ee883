"""Models: architectures, the patch classifier, the LightningModule, losses, data and the zoo."""
