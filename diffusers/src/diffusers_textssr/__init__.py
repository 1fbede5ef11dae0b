"""TextSSR extension of diffusers."""
