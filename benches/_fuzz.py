"""A bounded schemathesis run against a server's own OpenAPI document (``/openapi.json``): every
operation, at most ``max_examples`` generated requests each and ``seconds`` in all; counts the
cases and the answers by status class. Used by tests/serving/test_serving_fuzz.py (briefly) and
benches/bench_serving.py (longer)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Dict, Optional


def fuzz(base_url: str, max_examples: int = 25, seconds: float = 60.0,
         headers: Optional[Dict[str, str]] = None, seed: int = 0, model_name: str = "ssd-resnet34") -> Dict[str, Any]:
    """Run schemathesis' generated requests against ``base_url``; returns ``cases`` (requests
    sent), ``statuses`` (a Counter of status codes), ``server_errors`` (a list of
    ``"METHOD path -> status: body"`` for each 5xx) and ``operations``."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", headers=dict(headers or {}))
    statuses: Counter = Counter()
    server_errors = []
    started = time.monotonic()
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @hypothesis_seed(seed)
        @settings(max_examples=max_examples, deadline=None, database=None, derandomize=False,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        @given(case=operation.as_strategy())
        def run(case) -> None:
            if time.monotonic() - started > seconds:
                return
            # Three cases in four name the served model (and its version), so that the fuzzing
            # reaches the bodies and not only the 404 of an unknown model.
            if case.path_parameters and sum(statuses.values()) % 4:
                if "model_name" in case.path_parameters:
                    case.path_parameters["model_name"] = model_name
                if "version" in case.path_parameters:
                    case.path_parameters["version"] = "1"
            response = case.call(base_url=base_url, headers=dict(headers or {}), timeout=30)
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                server_errors.append(f"{case.method} {case.formatted_path} -> {response.status_code}: "
                                     f"{response.text[:200]}")

        run()
    return {"cases": sum(statuses.values()), "statuses": statuses, "server_errors": server_errors,
            "operations": operations, "seconds": time.monotonic() - started}
