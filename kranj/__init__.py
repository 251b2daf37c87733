"""Above the services: the `kranj` command line (kranj/cli/), the supervisor of `kranj up`,
`kranj run <service>` and the docs generator. The only package that may import `services`."""
