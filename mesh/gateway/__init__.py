"""The HTTP entry point of a mesh: `POST /api/v1/<module>/<Method>` with JSON calls that unary
method of the module over gRPC (protobuf's canonical JSON mapping) and answers its JSON.

Pieces, each with one job: `routes` (a module's methods, read from its server reflection),
`directory` (which modules run where, followed live from the coordinator), `transcoding`
(JSON in and out, gRPC status to HTTP status), `openapi` (the OpenAPI document), `metrics`
(Prometheus), `limits` (rate limits), `limit_plans` (which limit applies), `limit_sharing` (the
limits shared between replicas through NATS), `edges` (what every answer goes through), `app` (the
routes: authentication, the calls, health), `serve` (listening and stopping). `mesh gateway`
(mesh.cli.gateway) and `mesh up` run it.
"""
