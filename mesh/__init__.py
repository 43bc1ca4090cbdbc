"""Module Mesh's control plane: manifests to graph, coordinator, supervisor, CLI.

The generated contracts live in `mesh.v1`; the control plane builds on `sdk` and
`mesh.v1`, never the other way round.
"""
