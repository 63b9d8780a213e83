"""config_validator: checks a service deployment config and answers it normalized.

parameters: {"allowed_registries": ["registry.example.com"], "max_replicas": 10,
             "default_port": 8080}
input_data: {"name": " Checkout ", "image": "registry.example.com/shop/checkout",
             "replicas": 3, "env": {"LOG_LEVEL": "info"}}
-> {"valid": bool, "errors": [...], "warnings": [...], "config": <normalized copy>}
Normalizing means: name trimmed and lower-cased, image pinned to ":latest" when untagged,
replicas and port defaulted, env keys upper-cased and values turned into strings.
"""

import re

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class AIOSv1PolicyRule:
    def __init__(self, rule_id, settings, parameters):
        parameters = parameters or {}
        self.allowed_registries = [r.rstrip("/") for r in parameters.get("allowed_registries", [])]
        self.max_replicas = int(parameters.get("max_replicas", 10))
        self.default_port = int(parameters.get("default_port", 8080))

    def eval(self, parameters, input_data, context):
        source = dict(input_data or {})
        errors, warnings = [], []
        config = {}

        name = str(source.get("name", "")).strip().lower()
        if not _NAME.match(name):
            errors.append(f"name: {name!r} is not a DNS label (a-z, 0-9, '-', at most 63)")
        config["name"] = name

        image = str(source.get("image", "")).strip()
        if not image:
            errors.append("image: is required")
        else:
            last = image.rsplit("/", 1)[-1]
            if ":" not in last and "@" not in last:
                image += ":latest"
                warnings.append("image: no tag given, pinned to :latest")
            registry = image.split("/", 1)[0] if "/" in image else "docker.io"
            if self.allowed_registries and registry not in self.allowed_registries:
                errors.append(f"image: registry {registry!r} is not one of {self.allowed_registries}")
        config["image"] = image

        replicas = source.get("replicas", 1)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            errors.append(f"replicas: {replicas!r} is not a non-negative integer")
        elif replicas > self.max_replicas:
            warnings.append(f"replicas: {replicas} capped at {self.max_replicas}")
            replicas = self.max_replicas
        config["replicas"] = replicas

        port = source.get("port", self.default_port)
        if not isinstance(port, int) or not 0 < port < 65536:
            errors.append(f"port: {port!r} is not a TCP port")
        config["port"] = port

        env = source.get("env", {})
        if not isinstance(env, dict):
            errors.append("env: must be an object")
            env = {}
        config["env"] = {str(k).strip().upper(): str(v) for k, v in sorted(env.items())}

        return {"valid": not errors, "errors": errors, "warnings": warnings, "config": config}
