"""An API client whose every request has a timeout.

The ``kubernetes`` client sends a request without one unless the call passes ``_request_timeout``
(kubernetes-client/python#1961: no default in its Configuration), and urllib3 then waits forever on a connection
that went silent. A controller thread stuck there holds what it holds (the leader Lease's lock, a run, a
publisher slot) and a graceful stop never ends. Calls that pass their own (watches, probes) keep it."""

from __future__ import annotations

from typing import Any

import kubernetes

# (connect, read) seconds, per attempt (urllib3 tries again up to 3 times: any request that could not connect,
# an idempotent one whose answer is late): generous for a paged LIST of thousands of objects on a busy API
# server, short enough that a dead connection fails the request instead of the thread.
DEFAULT_TIMEOUT = (10.0, 60.0)


class BoundedApiClient(kubernetes.client.ApiClient):
    def call_api(self, method: str, url: str, header_params: Any = None, body: Any = None,
                 post_params: Any = None, _request_timeout: Any = None) -> Any:
        return super().call_api(method, url, header_params, body, post_params,
                                _request_timeout if _request_timeout is not None else DEFAULT_TIMEOUT)


__all__ = ["DEFAULT_TIMEOUT", "BoundedApiClient"]
