"""REST API for annotation, one module per subject: projects (and tokens), dialogues."""
