"""What readers see: Jinja2 templates rendered to emails and posts, and each network's length rules."""
