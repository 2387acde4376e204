"""The Kubernetes client every service that talks to the apiserver builds the same way."""

from __future__ import annotations

from typing import Any

from kubernetes import client, config


def api_client(kubeconfig: str | None = None, *, connections: int = 10) -> Any:
    """An ApiClient with in-cluster credentials in a pod, else from `kubeconfig` (None: the
    client's default, KUBECONFIG's files or ~/.kube/config), as kopf does.

    `connections`: the connection pool's size; one per thread that calls through it, so
    no call waits for a pooled connection.
    """
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = connections
    return client.ApiClient(configuration)
