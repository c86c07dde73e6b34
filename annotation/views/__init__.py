"""Server-rendered pages for annotation, one module per subject: projects (and login), dialogues."""
