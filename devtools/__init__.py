"""Developer tools, never imported by production code: the local Kafka broker (fetched with
Maven, run as single-node KRaft), the synthetic-traffic simulator and `holdwatch demo`.

`devtools/kafka/` holds the broker's dependency POM and logging configs as package data.
May import anything; `streams.cli.main` is the only product module that imports it (to register
`holdwatch broker|simulate|demo` and to find a running local broker).
"""
