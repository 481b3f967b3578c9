"""Deployment to Jetson devices: versioned bundles (with their installer and service) and flashing over ssh."""
