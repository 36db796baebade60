"""jobs_util.py - the old names of what fixtures.py now holds, for test_webhooks.py until it
imports fixtures itself; nothing else uses this module."""

from fixtures import AUTH, announce, metric, metrics_text, wait_record  # noqa: F401
from fixtures import put_source as upload  # noqa: F401
from harness import timeout_scale


def wait_terminal(svc, key, timeout):
    """wait_record() by key, timeout already scaled by the caller (as it used to be)."""
    return wait_record(svc, key=key, timeout=timeout / timeout_scale())
