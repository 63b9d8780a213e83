"""The SDK against the real `policygrid serve` (built by ./test.sh) on a free loopback port."""
import json
import os
import tempfile
import unittest
import warnings

import support
from policygrid import LocalPolicyEvaluator, PolicyGridApiError, PolicyGridClient, PolicyGridWarning, ServerUnreachableError

CLI = support.find_cli()
SKIP_REASON = ("the .NET build is absent (src/PolicyGrid.Cli/bin/*/net10.0/policygrid.dll); "
               "./test.sh builds it first, or set POLICYGRID_CLI_DLL")


def policy_document(code: str, release_tag: str = "beta") -> dict:
    manifest = os.path.join(support.REPO, "samples", "policies", "ip_allowlist", "manifest.json")
    if os.path.isfile(manifest):  # the sample as its author registers it
        with open(manifest, encoding="utf-8") as f:
            return dict(json.load(f), code=code, release_tag=release_tag)
    return {
        "name": "ip_allowlist", "version": "1.0", "release_tag": release_tag, "type": "python_class_v1",
        "code": code, "description": "IPv4 allowlist (SDK tests)",
        "policy_parameters": {"local_allowlist": ["10.0.0.1"]},
        "policy_parameters_schema": {"local_allowlist": {"type": "array", "items": {"type": "string"}}},
        "policy_input_schema": {"ip": {"type": "string", "required": True}},
    }


class RunningServer:
    """One server per test class; the bundle uploaded and the policy created through the SDK's client."""

    def __init__(self, release_tag: str):
        self.server = support.Server(CLI)
        self.client = PolicyGridClient(self.server.url, timeout=30)
        self.bundle = self.client.upload_bundle(support.zip_bytes(support.ip_allowlist_files()))
        self.uri = f"ip_allowlist:1.0-{release_tag}"
        self.document = self.client.create_policy(policy_document(self.bundle["url"], release_tag))


@unittest.skipIf(CLI is None, SKIP_REASON)
class ServerEvaluationTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cache = tempfile.TemporaryDirectory()
        try:
            cls.running = RunningServer("beta")
        except Exception:
            cls.cache.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.running.server.cleanup()
        cls.cache.cleanup()

    def evaluator(self, mode="local", **kw):
        return LocalPolicyEvaluator(self.running.uri, kw.pop("parameters", None), kw.pop("settings", None), mode=mode,
                                    executor_id="local", server=self.running.server.url, timeout=30,
                                    cache_dir=self.cache.name, **kw)

    def test_upload_answers_code_sha_and_url(self):
        bundle = self.running.bundle
        self.assertTrue(bundle["code"].startswith("bundle://sha256/"))
        self.assertTrue(bundle["url"].endswith(f"/bundles/sha256/{bundle['sha256']}"))
        self.assertEqual(self.running.document["policy_rule_uri"], self.running.uri)

    def test_local_mode_allows_and_denies(self):
        ev = self.evaluator()
        self.assertTrue(ev.execute_policy_rule({"ip": "10.0.0.1"})["allowed"])
        self.assertFalse(ev.execute_policy_rule({"ip": "10.9.9.9"})["allowed"])

    def test_remote_mode_allows_and_denies_through_the_local_executor(self):
        ev = self.evaluator("remote")
        self.assertTrue(ev.execute_policy_rule({"ip": "10.0.0.1"})["allowed"])
        self.assertFalse(ev.execute_policy_rule({"ip": "10.9.9.9"})["allowed"])

    def test_local_and_remote_agree_with_parameter_overrides(self):
        for mode in ("local", "remote"):
            ev = self.evaluator(mode, parameters={"local_allowlist": ["10.3.3.3"]})
            self.assertTrue(ev.execute_policy_rule({"ip": "10.3.3.3"})["allowed"], mode)

    def test_local_and_remote_agree_with_call_parameter_overrides(self):
        # The sample reads local_allowlist in __init__: an executor makes an instance with a call's parameters, local mode
        # ran the call on the instance made with the evaluator's, so the override allowed remotely and denied locally.
        for mode in ("local", "remote"):
            ev = self.evaluator(mode)
            self.assertTrue(ev.execute_policy_rule({"ip": "10.3.3.3"}, {"local_allowlist": ["10.3.3.3"]})["allowed"], mode)
            self.assertFalse(ev.execute_policy_rule({"ip": "10.0.0.1"}, {"local_allowlist": ["10.3.3.3"]})["allowed"], mode)
            self.assertTrue(ev.execute_policy_rule({"ip": "10.0.0.1"})["allowed"], mode)

    def test_local_management_changes_the_held_instance(self):
        ev = self.evaluator()
        ev.execute_mgmt_command("update_local_allowlist", {"ips": ["10.7.7.7"]})
        self.assertTrue(ev.execute_policy_rule({"ip": "10.7.7.7"})["allowed"])
        self.assertIsInstance(ev.execute_mgmt_command("get_state", {}), dict)

    def test_remote_management_answers(self):
        self.assertIsInstance(self.evaluator("remote").execute_mgmt_command("get_state", {}), dict)

    def test_unknown_policy_is_not_found(self):
        with self.assertRaises(PolicyGridApiError) as caught:
            LocalPolicyEvaluator("nope:1.0-x", {}, {}, server=self.running.server.url, cache_dir=self.cache.name)
        self.assertEqual((caught.exception.status, caught.exception.code), (404, "not_found"))

    def test_local_and_remote_name_a_bad_parameter_override_alike(self):
        # Local mode named it policy_parameters.local_allowlist, an executor parameters.local_allowlist.
        for mode in ("local", "remote"):
            with self.assertRaises(PolicyGridApiError) as caught:
                self.evaluator(mode).execute_policy_rule({"ip": "10.0.0.1"}, {"local_allowlist": "10.0.0.1"})
            self.assertEqual((caught.exception.status, caught.exception.code), (400, "validation_failed"), mode)
            self.assertEqual([e["path"] for e in caught.exception.errors], ["parameters.local_allowlist"], mode)

    def test_remote_bad_input_is_a_400(self):
        with self.assertRaises(PolicyGridApiError) as caught:
            self.evaluator("remote").execute_policy_rule({"address": "10.0.0.1"})
        self.assertEqual(caught.exception.status, 400)


@unittest.skipIf(CLI is None, SKIP_REASON)
class ServerLifecycleTests(unittest.TestCase):
    """Updates, retirement and the server going away, on a server of its own."""

    def setUp(self):
        self.cache = tempfile.TemporaryDirectory()
        self.running = RunningServer("lifecycle")

    def tearDown(self):
        self.running.server.cleanup()
        self.cache.cleanup()

    def evaluator(self, mode="local"):
        return LocalPolicyEvaluator(self.running.uri, None, None, mode=mode, server=self.running.server.url,
                                    timeout=30, cache_dir=self.cache.name, revalidate_seconds=0)

    def test_update_then_retire_reach_a_local_evaluator(self):
        ev = self.evaluator()
        self.assertFalse(ev.execute_policy_rule({"ip": "10.8.8.8"})["allowed"])
        self.running.client.update_policy(self.running.uri, {"$set": {"policy_parameters.local_allowlist": ["10.8.8.8"]}})
        self.assertTrue(ev.execute_policy_rule({"ip": "10.8.8.8"})["allowed"])
        self.running.client.update_policy(self.running.uri, {"$set": {"status": "retired"}})
        for mode_ev in (ev, self.evaluator("remote")):
            with self.assertRaises(PolicyGridApiError) as caught:
                mode_ev.execute_policy_rule({"ip": "10.8.8.8"})
            self.assertEqual((caught.exception.status, caught.exception.code), (410, "retired"))

    def test_a_deprecated_policy_warns_in_remote_mode_as_in_local_mode(self):
        # The executor answers a deprecated policy's call with a Deprecation header; remote mode dropped it silently.
        local, remote = self.evaluator(), self.evaluator("remote")
        self.running.client.update_policy(self.running.uri, {"$set": {"status": "deprecated"}})
        for ev in (local, remote):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self.assertTrue(ev.execute_policy_rule({"ip": "10.0.0.1"})["allowed"])  # it still runs
                ev.execute_policy_rule({"ip": "10.0.0.1"})
                ev.execute_mgmt_command("get_state")
            said = [w for w in caught if issubclass(w.category, DeprecationWarning)]
            self.assertEqual([str(w.message) for w in said], [f"policy {self.running.uri} is deprecated"], ev.mode)  # once
            self.assertEqual(said[0].filename, __file__)  # at the caller's line
        self.running.client.update_policy(self.running.uri, {"$set": {"status": "active"}})
        remote.execute_policy_rule({"ip": "10.0.0.1"})
        self.running.client.update_policy(self.running.uri, {"$set": {"status": "deprecated"}})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            remote.execute_mgmt_command("get_state")
        self.assertEqual([str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)],
                         [f"policy {self.running.uri} is deprecated"])  # deprecated again: said again

    def test_server_gone_local_keeps_serving_remote_fails_closed(self):
        local, remote = self.evaluator(), self.evaluator("remote")
        self.assertTrue(local.execute_policy_rule({"ip": "10.0.0.1"})["allowed"])
        self.assertTrue(remote.execute_policy_rule({"ip": "10.0.0.1"})["allowed"])
        self.running.server.stop()
        self.assertTrue(local.execute_policy_rule({"ip": "10.0.0.1"})["allowed"])
        with self.assertRaises(ServerUnreachableError):
            remote.execute_policy_rule({"ip": "10.0.0.1"})
        with self.assertRaises(ServerUnreachableError):
            self.evaluator()  # nothing held: fail closed


@unittest.skipIf(CLI is None, SKIP_REASON)
class ServerIfMatchTests(unittest.TestCase):
    """Conditional updates and deletes (If-Match) of executors, graphs and policies: a stale ETag is a 409 conflict."""

    @classmethod
    def setUpClass(cls):
        cls.running = RunningServer("ifmatch")
        cls.client = cls.running.client

    @classmethod
    def tearDownClass(cls):
        cls.running.server.cleanup()

    def assert_conflict(self, call):
        with self.assertRaises(PolicyGridApiError) as caught:
            call()
        self.assertEqual((caught.exception.status, caught.exception.code), (409, "conflict"))

    def test_executor_update_and_delete_honour_if_match(self):
        self.client.create_executor({"executor_id": "edge-im", "executor_host_uri": "http://10.0.0.7:10000"})
        stale = self.client.get_executor_with_etag("edge-im").etag
        self.assertTrue(stale)
        self.client.update_executor("edge-im", {"$set": {"executor_status": "draining"}}, if_match=stale)
        self.assert_conflict(lambda: self.client.update_executor("edge-im", {"$set": {"executor_status": "unhealthy"}},
                                                                 if_match=stale))
        self.assert_conflict(lambda: self.client.delete_executor("edge-im", if_match=stale))
        self.assertEqual(self.client.get_executor("edge-im")["executor_status"], "draining")
        self.client.delete_executor("edge-im", if_match=self.client.get_executor_with_etag("edge-im").etag)
        with self.assertRaises(PolicyGridApiError) as caught:
            self.client.get_executor("edge-im")
        self.assertEqual(caught.exception.status, 404)

    def test_graph_update_and_delete_honour_if_match(self):
        # Its node has no deployed function: the server warns of it on every write (expected here, so not shown).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PolicyGridWarning)
            uri = self.client.create_graph({"graph_name": "g_im", "graph_version": "1.0", "graph_release_tag": "beta",
                                            "graph_function_ids": ["a"], "graph_connection_data": {}})["graph_uri"]
            stale = self.client.get_graph_with_etag(uri).etag
            self.client.update_graph(uri, {"$set": {"graph_description": "first"}}, if_match=stale)
            self.assert_conflict(lambda: self.client.update_graph(uri, {"$set": {"graph_description": "second"}}, if_match=stale))
            self.assert_conflict(lambda: self.client.delete_graph(uri, if_match=stale))
            self.assertEqual(self.client.get_graph(uri)["graph_description"], "first")
            self.client.delete_graph(uri, if_match=self.client.get_graph_with_etag(uri).etag)

    def test_policy_delete_honours_if_match_and_an_empty_one_is_refused_not_dropped(self):
        uri = self.running.uri
        stale = self.client.get_policy_with_etag(uri).etag
        # An empty If-Match (an unset variable) was left out, so the update went through unconditionally.
        with self.assertRaises(PolicyGridApiError) as caught:
            self.client.update_policy(uri, {"$set": {"description": "unconditional"}}, if_match="")
        self.assertEqual(caught.exception.status, 400)
        self.client.update_policy(uri, {"$set": {"description": "changed"}}, if_match=stale)
        self.assert_conflict(lambda: self.client.delete_policy(uri, if_match=stale))
        self.assertEqual(self.client.get_policy(uri)["description"], "changed")
        self.client.delete_policy(uri, if_match=self.client.get_policy_with_etag(uri).etag)


if __name__ == "__main__":
    unittest.main()
