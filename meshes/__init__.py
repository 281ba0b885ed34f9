"""Model builders and bundled example meshes (installed as ``fem.meshes``)."""
