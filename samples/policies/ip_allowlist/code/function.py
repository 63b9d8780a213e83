"""ip_allowlist: the contract's worked example. Standard library only.

settings.remote_allowlist_url (optional): an http(s) URL answering a JSON list of IPv4
addresses (or one address per line), fetched once when the policy is loaded. If it cannot be
fetched the remote list stays empty: an allowlist fails closed.
parameters.local_allowlist: list of IPv4 addresses.
input_data: {"ip": "10.0.0.1"} -> {"allowed": bool, "reason": "allowed"|"denied", "input_data": ...}
management: update_local_allowlist {"ips": [...]}, get_state {}.
"""

import ipaddress
import json
import logging

log = logging.getLogger("ip_allowlist")


def _ipv4_list(values, field):
    if not isinstance(values, list):
        raise ValueError(f"{field} must be a list of IPv4 addresses")
    result = []
    for i, value in enumerate(values):
        try:
            result.append(str(ipaddress.IPv4Address(str(value).strip())))
        except ValueError:
            raise ValueError(f"{field}[{i}]: {value!r} is not an IPv4 address") from None
    return result


def _fetch_remote(url, timeout):
    import urllib.request  # only when a remote list is configured: it is a heavy import

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - operator-configured URL
            text = response.read(1 << 20).decode("utf-8")
    except Exception as exc:  # noqa: BLE001 - unreachable list = no remote entries (fail closed)
        log.warning("remote allowlist %s could not be fetched: %s", url, exc)
        return []
    try:
        values = json.loads(text)
    except ValueError:
        values = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    try:
        return _ipv4_list(values, "remote allowlist")
    except ValueError as exc:
        log.warning("remote allowlist %s ignored: %s", url, exc)
        return []


class AIOSv1PolicyRule:
    def __init__(self, rule_id, settings, parameters):
        self.rule_id = rule_id
        self.remote_url = (settings or {}).get("remote_allowlist_url") or ""
        timeout = float((settings or {}).get("remote_timeout_seconds", 2))
        self.remote_allowlist = _fetch_remote(self.remote_url, timeout) if self.remote_url else []
        self._set_local(_ipv4_list((parameters or {}).get("local_allowlist", []), "local_allowlist"))

    def _set_local(self, addresses):
        # The lists keep their order for get_state; calls look addresses up in one set, whatever the lists' length.
        self.local_allowlist = addresses
        self._allowed = frozenset(addresses) | frozenset(self.remote_allowlist)

    def eval(self, parameters, input_data, context):
        ip = str((input_data or {}).get("ip", "")).strip()
        allowed = ip in self._allowed
        return {"allowed": allowed, "reason": "allowed" if allowed else "denied", "input_data": input_data}

    def management(self, action, data):
        if action == "update_local_allowlist":
            self._set_local(_ipv4_list((data or {}).get("ips"), "ips"))
            return {"updated": True, "local_allowlist": list(self.local_allowlist)}
        if action == "get_state":
            return self.get_state()
        raise ValueError(f"unknown management action {action!r}; known: update_local_allowlist, get_state")

    def get_state(self):
        return {"local_allowlist": list(self.local_allowlist),
                "remote_allowlist_url": self.remote_url,
                "remote_allowlist_size": len(self.remote_allowlist)}

    def set_state(self, state):
        if "local_allowlist" in (state or {}):
            self._set_local(_ipv4_list(state["local_allowlist"], "local_allowlist"))
