"""The CKD network: two ViT student branches with (multi-modal) candidate elimination and a center head."""
