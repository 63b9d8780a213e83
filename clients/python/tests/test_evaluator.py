"""LocalPolicyEvaluator against a loopback registry: fetch once, verify, revalidate, fail closed."""
import contextlib
import datetime
import hashlib
import math
import os
import socket
import sys
import tempfile
import threading
import time
import unittest

import support
from policygrid import LocalPolicyEvaluator, PolicyGridApiError, PolicyGridClient, PolicyGridError, ServerUnreachableError

URI = "ip_allowlist:1.0-beta"
DOC = {
    "policy_rule_uri": URI, "name": "ip_allowlist", "version": "1.0", "release_tag": "beta",
    "type": "python_class_v1", "status": "active",
    "policy_parameters": {"local_allowlist": ["10.0.0.1"]}, "policy_settings": {},
    "policy_input_schema": {"ip": {"type": "string", "required": True, "pattern": r"^\d{1,3}(\.\d{1,3}){3}$"}},
    "policy_parameters_schema": {"local_allowlist": {"type": "array", "items": {"type": "string"}}},
}


class EvaluatorTests(unittest.TestCase):
    def setUp(self):
        self.cache = tempfile.TemporaryDirectory()
        self.registry = support.LoopbackRegistry(DOC, support.zip_bytes({"code/function.py": support.IP_ALLOWLIST.encode()}))

    def tearDown(self):
        self.registry.stop()
        self.cache.cleanup()

    def evaluator(self, **kw):
        kw.setdefault("revalidate_seconds", 3600)
        return LocalPolicyEvaluator(URI, kw.pop("parameters", None), kw.pop("settings", None), mode=kw.pop("mode", "local"),
                                    server=self.registry.url, cache_dir=self.cache.name, timeout=2, **kw)

    def test_evaluates_in_process_with_stored_parameters(self):
        ev = self.evaluator()
        self.assertEqual(ev.execute_policy_rule({"ip": "10.0.0.1"})["allowed"], True)
        denied = ev.execute_policy_rule({"ip": "10.9.9.9"})
        self.assertEqual((denied["allowed"], denied["reason"]), (False, "denied"))

    def test_constructor_parameters_and_call_parameters_override_stored_ones(self):
        ev = self.evaluator(parameters={"local_allowlist": ["10.0.0.2"]})
        self.assertTrue(ev.execute_policy_rule({"ip": "10.0.0.2"})["allowed"])
        self.assertFalse(ev.execute_policy_rule({"ip": "10.0.0.1"})["allowed"])
        self.assertTrue(ev.execute_policy_rule({"ip": "10.0.0.7"}, parameters={"local_allowlist": ["10.0.0.7"]})["allowed"])

    def test_call_parameters_reach_init_as_on_an_executor_and_management_stays_with_the_held_instance(self):
        # An executor makes an instance with a call's parameters; local mode ran the call on the instance made with the
        # evaluator's, so a policy reading them in __init__ ignored the override locally and applied it remotely.
        self.registry.stop()
        self.registry = support.LoopbackRegistry(DOC, support.zip_bytes({"code/function.py": b"""
class AIOSv1PolicyRule:
    def __init__(self, rule_id, settings, parameters):
        self.allow = list(parameters.get("local_allowlist", []))
    def eval(self, parameters, input_data, context):
        context["calls"] = context.get("calls", 0) + 1
        return {"allowed": input_data["ip"] in self.allow, "calls": context["calls"]}
    def management(self, action, data):
        self.allow = list(data["ips"])
        return {}
"""}))
        ev = self.evaluator()
        override = {"local_allowlist": ["10.0.0.7"]}
        self.assertTrue(ev.execute_policy_rule({"ip": "10.0.0.7"}, override)["allowed"])
        self.assertFalse(ev.execute_policy_rule({"ip": "10.0.0.1"}, override)["allowed"])
        self.assertTrue(ev.execute_policy_rule({"ip": "10.0.0.1"})["allowed"])
        # The same parameters as the evaluator's run on the held instance, which management commands change.
        ev.execute_mgmt_command("update_local_allowlist", {"ips": ["10.0.0.8"]})
        self.assertTrue(ev.execute_policy_rule({"ip": "10.0.0.8"}, {"local_allowlist": ["10.0.0.1"]})["allowed"])
        # One context for all of them, as on a server (the policy URI is the context key).
        self.assertEqual(ev.execute_policy_rule({"ip": "10.0.0.7"}, override)["calls"], 5)

    def test_bundle_is_downloaded_once_and_shared_through_the_cache(self):
        ev = self.evaluator()
        for _ in range(50):
            ev.execute_policy_rule({"ip": "10.0.0.1"})
        self.evaluator().execute_policy_rule({"ip": "10.0.0.1"})
        self.assertEqual(self.registry.bundle_reads, 1)

    def test_a_bundle_that_does_not_match_its_hash_is_refused(self):
        self.registry.bundle = support.zip_bytes({"code/function.py": b"class AIOSv1PolicyRule: pass  # tampered\n"})
        with self.assertRaises(PolicyGridApiError) as caught:
            self.evaluator()
        self.assertEqual(caught.exception.code, "backend_error")
        self.assertIn("failed verification", caught.exception.message)

    def test_an_unpinned_code_url_serving_other_bytes_than_the_recorded_code_sha256_is_refused(self):
        recorded = self.registry.bundle
        other = support.zip_bytes({"code/function.py": b"class AIOSv1PolicyRule: pass  # other code at the same URL\n"})
        url = self.registry.url + "/dist/allowlist.zip"
        self.registry.files["/dist/allowlist.zip"] = other
        self.registry.update(code=url, code_sha256=hashlib.sha256(recorded).hexdigest())
        with self.assertRaises(PolicyGridApiError) as caught:
            self.evaluator()
        self.assertEqual(caught.exception.code, "backend_error")
        self.assertIn(url, caught.exception.message)
        self.assertIn(f"has sha256 {hashlib.sha256(other).hexdigest()}, not the expected {hashlib.sha256(recorded).hexdigest()}",
                      caught.exception.message)

        self.registry.files["/dist/allowlist.zip"] = recorded  # the bytes the registry recorded run
        self.assertTrue(self.evaluator().execute_policy_rule({"ip": "10.0.0.1"})["allowed"])

    def test_context_persists_between_calls_and_management_reaches_the_held_instance(self):
        ev = self.evaluator()
        ev.execute_policy_rule({"ip": "10.0.0.1"})
        ev.execute_policy_rule({"ip": "10.0.0.1"})
        self.assertEqual(ev.context["calls"], 2)
        self.assertEqual(ev.execute_mgmt_command("update_local_allowlist", {"ips": ["10.5.5.5"]}), {"local_allowlist": ["10.5.5.5"]})
        self.assertTrue(ev.execute_policy_rule({"ip": "10.5.5.5"})["allowed"])
        self.assertEqual(ev.execute_mgmt_command("get_state", {}), {"local_allowlist": ["10.5.5.5"]})

    def test_bad_input_is_refused_before_the_policy_runs_naming_the_field(self):
        ev = self.evaluator()
        with self.assertRaises(PolicyGridApiError) as caught:
            ev.execute_policy_rule({"ip": "not-an-ip"})
        self.assertEqual((caught.exception.status, caught.exception.code), (400, "validation_failed"))
        self.assertIn("input_data.ip: does not match", caught.exception.message)
        with self.assertRaises(PolicyGridApiError) as caught:
            ev.execute_policy_rule({})
        self.assertIn("input_data.ip: is required", caught.exception.message)
        self.assertNotIn("calls", ev.context)

    def test_bad_parameter_override_is_refused(self):
        with self.assertRaises(PolicyGridApiError) as caught:
            self.evaluator(parameters={"local_allowlist": "10.0.0.1"})
        self.assertIn("parameters.local_allowlist: must be an array", caught.exception.message)  # as an executor names it
        self.assertNotIn("policy_parameters", caught.exception.message)

    def test_policy_exception_is_a_422_policy_error(self):
        ev = self.evaluator()
        with self.assertRaises(PolicyGridApiError) as caught:
            ev.execute_mgmt_command("explode", {})
        self.assertEqual((caught.exception.status, caught.exception.code), (422, "policy_error"))
        self.assertIn("ValueError: unknown action explode", caught.exception.message)

    def test_update_reaches_the_evaluator_when_it_revalidates(self):
        ev = self.evaluator(revalidate_seconds=3600)
        self.assertFalse(ev.execute_policy_rule({"ip": "10.0.0.9"})["allowed"])
        self.registry.update(policy_parameters={"local_allowlist": ["10.0.0.9"]})
        # Within the interval the held revision answers, without asking the registry again.
        self.assertFalse(ev.execute_policy_rule({"ip": "10.0.0.9"})["allowed"])
        self.assertEqual(self.registry.policy_reads, 1)
        ev.refresh()
        self.assertTrue(ev.execute_policy_rule({"ip": "10.0.0.9"})["allowed"])

    def test_an_update_that_reloads_starts_from_the_new_revision_as_a_redeployed_function_and_metadata_alone_keeps_it(self):
        # A Type 4 function takes a new revision only by a redeployment, which starts afresh: its management actions were
        # made for the old code and parameters. Local mode does the same when a re-read loads a new revision; the context
        # carries over, as on the servers.
        ev = self.evaluator()
        ev.execute_mgmt_command("update_local_allowlist", {"ips": ["10.5.5.5"]})
        self.registry.update(description="metadata only")
        ev.refresh()
        self.assertTrue(ev.execute_policy_rule({"ip": "10.5.5.5"})["allowed"])
        self.registry.update(policy_parameters={"local_allowlist": ["10.0.0.9"]})
        ev.refresh()
        self.assertFalse(ev.execute_policy_rule({"ip": "10.5.5.5"})["allowed"])
        self.assertEqual(ev.execute_mgmt_command("get_state", {}), {"local_allowlist": ["10.0.0.9"]})
        self.assertTrue(ev.execute_policy_rule({"ip": "10.0.0.9"})["allowed"])
        self.assertEqual(ev.context["calls"], 3)

    def test_interval_zero_revalidates_on_every_call(self):
        ev = self.evaluator(revalidate_seconds=0)
        self.registry.update(policy_parameters={"local_allowlist": ["10.0.0.9"]})
        self.assertTrue(ev.execute_policy_rule({"ip": "10.0.0.9"})["allowed"])

    def test_new_code_is_fetched_and_loaded_on_update(self):
        ev = self.evaluator(revalidate_seconds=0)
        new = support.zip_bytes({"code/function.py": b"class AIOSv1PolicyRule:\n"
                                 b"    def __init__(self, r, s, p): pass\n"
                                 b"    def eval(self, p, i, c): return {'allowed': True, 'reason': 'v2'}\n"})
        self.registry.bundle, self.registry.sha = new, hashlib.sha256(new).hexdigest()
        self.registry.update(code=f"bundle://sha256/{self.registry.sha}")
        self.assertEqual(ev.execute_policy_rule({"ip": "1.1.1.1"})["reason"], "v2")

    def test_new_code_brings_its_own_sibling_modules_and_another_policys_are_its_own(self):
        # sys.modules holds one `helpers` per interpreter: an update whose helpers.py changed went on running the old one,
        # and a second policy with a helpers.py of its own ran the first policy's.
        def bundle(value, tag):
            return support.zip_bytes({
                "code/function.py": b"import helpers\nclass AIOSv1PolicyRule:\n    def __init__(self, r, s, p): pass\n"
                                    b"    def eval(self, p, i, c): return {'allowed': True, 'reason': helpers.REASON}\n" + tag,
                "code/helpers.py": f"REASON = {value!r}\n".encode()})

        first = bundle("v1", b"# 1")
        self.registry.bundle, self.registry.sha = first, hashlib.sha256(first).hexdigest()
        self.registry.update(code=f"bundle://sha256/{self.registry.sha}")
        ev = self.evaluator()
        self.assertEqual("v1", ev.execute_policy_rule({"ip": "1.1.1.1"})["reason"])
        second = bundle("v2", b"# 2")
        self.registry.bundle, self.registry.sha = second, hashlib.sha256(second).hexdigest()
        self.registry.update(code=f"bundle://sha256/{self.registry.sha}")
        ev.refresh()
        self.assertEqual("v2", ev.execute_policy_rule({"ip": "1.1.1.1"})["reason"])

        other = support.LoopbackRegistry(dict(DOC, policy_rule_uri="other:1.0"), bundle("other", b"# other"))
        try:
            other_ev = LocalPolicyEvaluator("other:1.0", server=other.url, cache_dir=self.cache.name, timeout=2)
            self.assertEqual("other", other_ev.execute_policy_rule({"ip": "1.1.1.1"})["reason"])
        finally:
            other.stop()
        self.assertEqual("v2", ev.execute_policy_rule({"ip": "1.1.1.1"})["reason"])  # what it imported stays its own

    def test_retired_policy_raises_410(self):
        ev = self.evaluator(revalidate_seconds=0)
        self.registry.update(status="retired")
        with self.assertRaises(PolicyGridApiError) as caught:
            ev.execute_policy_rule({"ip": "10.0.0.1"})
        self.assertEqual((caught.exception.status, caught.exception.code), (410, "retired"))

    def test_a_policy_retired_when_the_evaluator_was_made_serves_once_it_is_active_again(self):
        self.registry.update(status="retired")
        ev = self.evaluator(revalidate_seconds=0)
        with self.assertRaises(PolicyGridApiError) as caught:
            ev.execute_policy_rule({"ip": "10.0.0.1"})
        self.assertEqual(caught.exception.code, "retired")
        self.registry.update(status="active")  # nothing was loaded for the retired revision: it used to stay None
        self.assertTrue(ev.execute_policy_rule({"ip": "10.0.0.1"})["allowed"])
        self.assertEqual(ev.execute_mgmt_command("get_state")["local_allowlist"], ["10.0.0.1"])

    def test_a_policy_retired_with_new_parameters_serves_them_once_it_is_active_again(self):
        ev = self.evaluator(revalidate_seconds=0)
        self.registry.update(status="retired", policy_parameters={"local_allowlist": ["10.0.0.9"]})
        with self.assertRaises(PolicyGridApiError):
            ev.execute_policy_rule({"ip": "10.0.0.9"})
        self.registry.update(status="active")
        self.assertTrue(ev.execute_policy_rule({"ip": "10.0.0.9"})["allowed"])

    def test_deleted_policy_raises_not_found(self):
        ev = self.evaluator(revalidate_seconds=0)
        self.registry.document["policy_rule_uri"] = "something:else-x"
        with self.assertRaises(PolicyGridApiError) as caught:
            ev.execute_policy_rule({"ip": "10.0.0.1"})
        self.assertEqual(caught.exception.code, "not_found")

    def test_local_mode_keeps_serving_a_held_policy_when_the_registry_is_unreachable(self):
        ev = self.evaluator(revalidate_seconds=0)
        self.registry.down = True  # the store behind it fails: 503
        self.assertTrue(ev.execute_policy_rule({"ip": "10.0.0.1"})["allowed"])
        self.registry.stop()  # and now nothing listens at all
        self.assertTrue(ev.execute_policy_rule({"ip": "10.0.0.1"})["allowed"])
        self.registry = support.LoopbackRegistry(DOC, b"")  # for tearDown

    def test_a_deleted_policy_keeps_raising_not_found_between_rereads(self):
        ev = self.evaluator(revalidate_seconds=3600)
        self.registry.document["policy_rule_uri"] = "something:else-x"
        with self.assertRaises(PolicyGridApiError):
            ev.refresh()
        with self.assertRaises(PolicyGridApiError) as caught:
            ev.execute_policy_rule({"ip": "10.0.0.1"})
        self.assertEqual((caught.exception.status, caught.exception.code), (404, "not_found"))

    def test_a_revision_that_cannot_be_loaded_is_not_replaced_by_the_one_it_superseded(self):
        ev = self.evaluator(revalidate_seconds=3600)
        good = self.registry.bundle
        # The registry names a new bundle, but what it serves does not match the hash.
        new = support.zip_bytes({"code/function.py": b"class AIOSv1PolicyRule: pass  # v2\n"})
        self.registry.sha = hashlib.sha256(new).hexdigest()
        self.registry.update(code=f"bundle://sha256/{self.registry.sha}")
        self.registry.bundle = good
        with self.assertRaises(PolicyGridApiError):
            ev.refresh()
        with self.assertRaises(PolicyGridApiError) as caught:
            ev.execute_policy_rule({"ip": "10.0.0.1"})
        self.assertEqual(caught.exception.code, "backend_error")
        self.assertIn("failed verification", caught.exception.message)
        # Once the registry names a loadable revision again, the next re-read loads it.
        self.registry.sha = hashlib.sha256(good).hexdigest()
        self.registry.update(code=f"bundle://sha256/{self.registry.sha}")
        ev.refresh()
        self.assertTrue(ev.execute_policy_rule({"ip": "10.0.0.1"})["allowed"])

    def test_a_held_policy_is_refused_once_unconfirmed_past_max_stale_seconds(self):
        ev = self.evaluator(revalidate_seconds=0, max_stale_seconds=0.3)
        self.registry.down = True  # the store behind the registry fails: 503
        self.assertTrue(ev.execute_policy_rule({"ip": "10.0.0.1"})["allowed"])
        time.sleep(0.4)  # past max_stale_seconds without a confirmation
        with self.assertRaises(PolicyGridApiError) as caught:
            ev.execute_policy_rule({"ip": "10.0.0.1"})
        self.assertEqual((caught.exception.status, caught.exception.code), (503, "backend_unavailable"))
        self.assertIn("has not confirmed revision", caught.exception.message)
        self.assertIn("store down", caught.exception.message)
        self.registry.down = False
        self.assertTrue(ev.execute_policy_rule({"ip": "10.0.0.1"})["allowed"])

    def test_max_stale_seconds_counts_only_while_rereads_fail(self):
        ev = self.evaluator(revalidate_seconds=3600, max_stale_seconds=0.1)
        time.sleep(0.2)  # past max_stale_seconds, but no re-read was due, let alone failed
        self.assertTrue(ev.execute_policy_rule({"ip": "10.0.0.1"})["allowed"])

    @contextlib.contextmanager
    def rereading_from_a_hung_registry(self, ev, timeout):
        """Points ev at a registry that takes connections and never answers, makes a re-read due and starts a call
        that makes it on another thread; yields once that re-read is waiting on the registry."""
        hung = socket.socket()
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)
        accepted, held_open = threading.Event(), []

        def accept():
            while True:
                try:
                    held_open.append(hung.accept()[0])
                except OSError:
                    return
                accepted.set()

        threading.Thread(target=accept, daemon=True).start()
        ev.client.server, ev.client.timeout = f"http://127.0.0.1:{hung.getsockname()[1]}", timeout
        ev._next_check = 0.0  # a re-read is due
        rereader = threading.Thread(target=ev.execute_policy_rule, args=({"ip": "10.0.0.1"},))
        try:
            rereader.start()
            self.assertTrue(accepted.wait(5))
            yield rereader
        finally:
            hung.close()
            for c in held_open:
                c.close()
            rereader.join()

    def test_a_hung_registry_stalls_only_the_call_that_rereads_and_only_once_per_interval(self):
        ev = self.evaluator(revalidate_seconds=0.2)
        with self.rereading_from_a_hung_registry(ev, timeout=0.5) as rereader:
            # While that call waits on the hung registry, another thread's call answers from the held revision.
            started = time.monotonic()
            self.assertTrue(ev.execute_policy_rule({"ip": "10.0.0.1"})["allowed"])
            self.assertLess(time.monotonic() - started, 0.25)
            rereader.join()
            # The failed re-read counts as this interval's: the calls right after it do not each wait a timeout again.
            started = time.monotonic()
            for _ in range(3):
                self.assertTrue(ev.execute_policy_rule({"ip": "10.0.0.1"})["allowed"])
            self.assertLess(time.monotonic() - started, 0.25)

    def test_calls_past_the_interval_answer_from_the_held_revision_while_a_reread_hangs(self):
        # With the defaults (timeout 10 s, interval 5 s), once the interval passed during a hung re-read every other
        # thread's call queued behind it until its timeout, instead of answering from the held revision.
        ev = self.evaluator(revalidate_seconds=3600)
        with self.rereading_from_a_hung_registry(ev, timeout=3):
            ev._next_check = 0.0  # the interval has passed again while that re-read still waits
            started = time.monotonic()
            for _ in range(3):
                self.assertTrue(ev.execute_policy_rule({"ip": "10.0.0.1"})["allowed"])
            self.assertLess(time.monotonic() - started, 1.0)

    # ------------------------------------------------------------------ fork (gunicorn/uwsgi prefork, multiprocessing)
    @unittest.skipUnless(hasattr(os, "fork"), "needs os.fork")
    def test_a_child_forked_while_another_thread_is_in_a_call_can_call_the_evaluator(self):
        # The child inherited the call lock held by a thread it does not have: every call in it hung for ever.
        gated = support.IP_ALLOWLIST + (
            "\nimport threading\nENTERED, GATE = threading.Event(), threading.Event()\n"
            "_eval = AIOSv1PolicyRule.eval\n"
            "def _gated(self, parameters, input_data, context):\n"
            "    result = _eval(self, parameters, input_data, context)\n"
            "    if input_data.get('ip') == '10.9.9.9':\n"
            "        ENTERED.set()\n"
            "        GATE.wait()\n"
            "    return result\n"
            "AIOSv1PolicyRule.eval = _gated\n")
        self.registry.stop()
        self.registry = support.LoopbackRegistry(DOC, support.zip_bytes({"code/function.py": gated.encode()}))
        ev = self.evaluator()
        module = sys.modules[f"_policygrid_bundle_{self.registry.sha[:20]}"]
        caller = threading.Thread(target=ev.execute_policy_rule, args=({"ip": "10.9.9.9"},))
        caller.start()
        try:
            self.assertTrue(module.ENTERED.wait(5))

            def child():
                result = ev.execute_policy_rule({"ip": "10.0.0.1"})
                # The parent's call had not finished: what it did to the context is not the child's.
                return 0 if result["allowed"] and ev.context == {"calls": 1} else 2

            self.assertEqual(0, support.in_a_forked_child(child))
        finally:
            module.GATE.set()
            caller.join()
        self.assertEqual({"calls": 1}, ev.context)  # the parent's call finished there as before

    @unittest.skipUnless(hasattr(os, "fork"), "needs os.fork")
    def test_a_child_forked_while_another_thread_rereads_still_rereads(self):
        # The child inherited the re-read lock held by a thread it does not have: it never re-read again, so it served
        # the revision it was forked with for ever, also after the policy was retired.
        ev = self.evaluator(revalidate_seconds=3600)
        with self.rereading_from_a_hung_registry(ev, timeout=3):
            self.registry.update(status="retired")

            def child():
                ev.client.server = self.registry.url
                try:
                    ev.execute_policy_rule({"ip": "10.0.0.1"})
                except PolicyGridApiError as e:
                    return 0 if e.code == "retired" else 3
                return 2

            self.assertEqual(0, support.in_a_forked_child(child))

    def test_pickling_an_evaluator_says_to_make_one_in_each_process(self):
        # multiprocessing's spawn and forkserver pickle what they hand a child: that failed naming '_thread.lock'.
        import pickle
        for ev in (self.evaluator(), self.evaluator(mode="remote")):
            with self.assertRaises(TypeError) as caught:
                pickle.dumps(ev)
            self.assertIn("LocalPolicyEvaluator (ip_allowlist:1.0-beta) cannot be pickled", str(caught.exception))
            self.assertIn("make one in each process", str(caught.exception))

    def test_local_mode_with_nothing_held_fails_closed(self):
        self.registry.stop()
        with self.assertRaises(ServerUnreachableError):
            self.evaluator()
        self.registry = support.LoopbackRegistry(DOC, b"")

    def test_remote_mode_fails_closed_when_unreachable(self):
        ev = LocalPolicyEvaluator(URI, {}, {}, mode="remote", executor_id="local",
                                  server=f"http://127.0.0.1:{support.free_port()}", timeout=1)
        with self.assertRaises(ServerUnreachableError):
            ev.execute_policy_rule({"ip": "10.0.0.1"})

    def test_bundle_without_the_class_is_a_policy_error(self):
        self.registry.bundle = support.zip_bytes({"code/function.py": b"class Other: pass\n"})
        self.registry.sha = hashlib.sha256(self.registry.bundle).hexdigest()
        self.registry.update(code=f"bundle://sha256/{self.registry.sha}")
        with self.assertRaises(PolicyGridApiError) as caught:
            self.evaluator()
        self.assertEqual(caught.exception.message, "policy ip_allowlist:1.0-beta cannot be loaded: code/function.py defines no AIOSv1PolicyRule class")

    def test_missing_requirements_are_named(self):
        self.registry.bundle = support.zip_bytes({"code/function.py": support.IP_ALLOWLIST.encode(),
                                                  "code/requirements.txt": b"surely-not-installed-pkg==1.0\n"})
        self.registry.sha = hashlib.sha256(self.registry.bundle).hexdigest()
        self.registry.update(code=f"bundle://sha256/{self.registry.sha}")
        with self.assertRaises(PolicyGridError) as caught:
            self.evaluator()
        self.assertIn("surely-not-installed-pkg==1.0", str(caught.exception))

    def test_bad_mode_is_refused(self):
        with self.assertRaises(ValueError):
            LocalPolicyEvaluator(URI, {}, {}, mode="inproc")

    def test_bad_constructor_arguments_are_refused_naming_the_argument(self):
        cases = [(dict(mode="remote", executor_id=None), "executor_id"), (dict(mode="remote", executor_id=""), "executor_id"),
                 (dict(server="127.0.0.1:10000"), "http(s) URL"), (dict(server="ftp://127.0.0.1:10000"), "http(s) URL"),
                 (dict(timeout=0), "timeout"), (dict(timeout=-1), "timeout"), (dict(timeout=1e12), "timeout"),
                 (dict(timeout=float("inf")), "timeout"), (dict(revalidate_seconds=-1), "revalidate_seconds"),
                 (dict(max_stale_seconds=-5), "max_stale_seconds")]
        for kw, named in cases:
            with self.subTest(**{k: repr(v) for k, v in kw.items()}):
                kw.setdefault("server", self.registry.url)
                with self.assertRaises(ValueError) as caught:
                    LocalPolicyEvaluator(URI, **kw)
                self.assertIn(named, str(caught.exception))
        self.assertEqual(self.registry.policy_reads, 0)

    def test_arguments_of_the_wrong_type_are_refused_naming_the_argument(self):
        # server=10000 failed as "'int' object has no attribute 'rstrip'", revalidate_seconds="5" as "'>=' not supported".
        cases = [(dict(server=10000), "server must be a str, not int"), (dict(token=5), "token must be a str, not int"),
                 (dict(revalidate_seconds="5"), "revalidate_seconds must be a number of seconds, not str"),
                 (dict(max_stale_seconds="60"), "max_stale_seconds must be a number of seconds, not str")]
        for kw, says in cases:
            with self.subTest(**{k: repr(v) for k, v in kw.items()}):
                kw.setdefault("server", self.registry.url)
                with self.assertRaises(TypeError) as caught:
                    LocalPolicyEvaluator(URI, **kw)
                self.assertIn(says, str(caught.exception))
        self.assertEqual(self.registry.policy_reads, 0)

    def test_call_parameters_that_are_no_dict_are_a_type_error_in_both_modes(self):
        for ev in (self.evaluator(), self.evaluator(mode="remote", executor_id="local")):
            for bad in (["local_allowlist"], [], "10.0.0.1"):
                with self.subTest(mode=ev.mode, parameters=bad), self.assertRaises(TypeError) as caught:
                    ev.execute_policy_rule({"ip": "10.0.0.1"}, bad)
                self.assertIn(f"parameters must be a dict, not {type(bad).__name__}", str(caught.exception))

    def test_input_data_that_is_no_object_is_a_400_in_local_mode_as_executors_answer_it(self):
        # Without an input template it reached the policy, which failed as 422 "AttributeError: 'list' object has no
        # attribute 'get'"; with one, the template's own words differed from the server's.
        self.registry.update(policy_input_schema={})
        ev = self.evaluator()
        for bad, says in (([{"ip": "10.0.0.1"}], "must be a JSON object, not a JSON array"), ("10.0.0.1", "must be a JSON object, not a JSON string"),
                          (None, "is required (a JSON object)")):
            with self.subTest(input_data=bad), self.assertRaises(PolicyGridApiError) as caught:
                ev.execute_policy_rule(bad)
            self.assertEqual((caught.exception.status, caught.exception.code), (400, "validation_failed"))
            self.assertEqual(caught.exception.message, f"input_data: {says}")
        self.assertEqual(ev.context.get("calls", 0), 0)  # the policy never ran

    def test_management_data_that_is_no_object_is_refused_locally_as_executors_refuse_it(self):
        ev = self.evaluator()
        for bad, kind in (([1], "a JSON array"), ("x", "a JSON string"), (5, "a JSON number"), (True, "a JSON boolean")):
            with self.subTest(data=bad), self.assertRaises(PolicyGridApiError) as caught:
                ev.execute_mgmt_command("get_state", bad)
            self.assertEqual((caught.exception.status, caught.exception.code), (400, "validation_failed"))
            self.assertEqual(caught.exception.message, f"data: must be a JSON object, not {kind}")
        self.assertEqual(ev.execute_mgmt_command("get_state"), ev.execute_mgmt_command("get_state", {}))

    def test_input_json_cannot_carry_is_a_400_naming_the_field_in_both_modes(self):
        held = self.evaluator()
        remote = self.evaluator(mode="remote", executor_id="local")
        for value, says in [({1, 2}, "set"), (datetime.datetime(2026, 1, 1), "datetime"), (math.nan, "nan"),
                            (math.inf, "inf"), (10 ** 400, "double's range")]:
            for ev in (held, remote):
                with self.subTest(value=repr(value)[:20], mode=ev.mode), self.assertRaises(PolicyGridApiError) as caught:
                    ev.execute_policy_rule({"ip": "10.0.0.1", "extra": {"x": [value]}})
                self.assertEqual((caught.exception.status, caught.exception.code), (400, "validation_failed"))
                self.assertIn("input_data.extra.x[0]", caught.exception.message)
                self.assertIn(says, caught.exception.message)
        self.assertEqual(held.context.get("calls", 0), 0)  # the policy never ran

    def test_input_the_server_would_refuse_as_json_text_is_a_400_naming_it_in_both_modes(self):
        # Each of these reached a local policy (a key twice, a lone surrogate: its echo then failed as the policy's 422,
        # or it ran on input a server never accepts), and nesting past Python's limit raised RecursionError in both modes.
        held = self.evaluator()
        remote = self.evaluator(mode="remote", executor_id="local")
        deep: dict = {}
        cur = deep
        for _ in range(5000):
            cur["x"] = {}
            cur = cur["x"]
        just_past: list = []  # input_data + 31 lists = 32 levels, one past what a server takes
        for _ in range(30):
            just_past = [just_past]
        cases = [({"y": deep}, "input_data.y.x", "nests deeper than 31 levels"),
                 ({"y": just_past}, "input_data.y", "nests deeper than 31 levels"),
                 ({"y": "\ud800"}, "input_data.y", "lone surrogate"),
                 ({"y": {"\udfff": 1}}, "input_data.y", "lone surrogate"),
                 ({"y": {1: "a", "1": "b"}}, "input_data.y", 'written as the JSON key "1"'),
                 ({"y": {True: "a", "true": "b"}}, "input_data.y", 'written as the JSON key "true"'),
                 ({"y": {math.inf: 1}}, "input_data.y", "key inf is not a JSON object key")]
        for extra, where, says in cases:
            for ev in (held, remote):
                with self.subTest(says=says, mode=ev.mode), self.assertRaises(PolicyGridApiError) as caught:
                    ev.execute_policy_rule({"ip": "10.0.0.1", **extra})
                self.assertEqual((caught.exception.status, caught.exception.code), (400, "validation_failed"))
                self.assertTrue(caught.exception.message.startswith(where), caught.exception.message)
                self.assertIn(says, caught.exception.message)
        for ev in (held, remote):
            with self.subTest(what="management data", mode=ev.mode), self.assertRaises(PolicyGridApiError) as caught:
                ev.execute_mgmt_command("update_local_allowlist", {"ips": ["10.0.0.1"], 1: 1, "1": 2})
            self.assertEqual(caught.exception.code, "validation_failed")
            self.assertIn('written as the JSON key "1"', caught.exception.message)
        self.assertEqual(held.context.get("calls", 0), 0)  # the policy never ran
        # 31 levels (input_data and 30 lists) are what a server takes, and they run
        fits: list = []
        for _ in range(29):
            fits = [fits]
        self.assertTrue(held.execute_policy_rule({"ip": "10.0.0.1", "y": fits})["allowed"])

    def test_a_client_body_nested_past_pythons_recursion_limit_is_a_400_not_a_recursion_error(self):
        deep: list = []
        for _ in range(5000):
            deep = [deep]
        with self.assertRaises(PolicyGridApiError) as caught:
            PolicyGridClient(self.registry.url, timeout=2).execute_policy("local", URI, {"y": deep})
        self.assertEqual((caught.exception.status, caught.exception.code), (400, "validation_failed"))
        self.assertIn("nests deeper than 32 levels", caught.exception.message)

    def test_local_mode_answers_the_echoed_input_as_a_server_does_not_as_the_callers_own_objects(self):
        # The input is only checked on its way in, but the answer echoing it is read back from JSON (docs/sdk.md): the
        # caller's tuple and int key come back as a server answers them, in objects that are not the caller's.
        given = {"ip": "10.0.0.1", "pair": (1, 2), 7: "seven"}
        seen = self.evaluator().execute_policy_rule(given)["input_data"]
        self.assertEqual(seen, {"ip": "10.0.0.1", "pair": [1, 2], "7": "seven"})
        seen["ip"] = "changed"
        self.assertEqual(given["ip"], "10.0.0.1")

    def test_management_commands_are_checked_against_the_policys_list_as_executors_do(self):
        self.registry.update(management_commands_schema=[
            {"name": "update_local_allowlist", "schema": {"ips": {"type": "array", "required": True, "items": {"type": "string"}}}},
            {"name": "get_state", "schema": {}}])
        ev = self.evaluator()
        with self.assertRaises(PolicyGridApiError) as caught:
            ev.execute_mgmt_command("reset", {})
        self.assertEqual((caught.exception.status, caught.exception.code), (400, "validation_failed"))
        self.assertIn("'reset' is not a management command of ip_allowlist:1.0-beta (known: update_local_allowlist, get_state)",
                      caught.exception.message)
        with self.assertRaises(PolicyGridApiError) as caught:
            ev.execute_mgmt_command("update_local_allowlist", {"ips": [5]})
        self.assertEqual(caught.exception.code, "validation_failed")
        self.assertIn("data.ips[0]", caught.exception.message)
        self.assertEqual(ev.execute_mgmt_command("update_local_allowlist", {"ips": ["10.0.0.9"]}), {"local_allowlist": ["10.0.0.9"]})

    def test_a_redirected_call_is_not_followed_as_a_get_and_says_where_it_pointed(self):
        moved = support.CannedAnswer(302, b"", "text/html", {"Location": "http://127.0.0.1:9/elsewhere"})
        try:
            ev = LocalPolicyEvaluator(URI, mode="remote", executor_id="local", server=moved.url, timeout=2)
            with self.assertRaises(PolicyGridApiError) as caught:
                ev.execute_policy_rule({"ip": "10.0.0.1"})
            self.assertEqual(caught.exception.status, 302)
            self.assertIn("pointing at http://127.0.0.1:9/elsewhere", caught.exception.message)
            self.assertEqual(moved.methods, ["POST"])  # not sent on as a GET
        finally:
            moved.stop()

    def test_a_200_without_the_envelope_is_never_a_result_or_a_commands_answer(self):
        for body, ctype in [(b"<html>sign in</html>", "text/html"), (b'{"allowed": true}', "application/json")]:
            canned = support.CannedAnswer(200, body, ctype)
            try:
                ev = LocalPolicyEvaluator(URI, mode="remote", executor_id="local", server=canned.url, timeout=2)
                for call in (lambda: ev.execute_policy_rule({"ip": "10.0.0.1"}), lambda: ev.execute_mgmt_command("get_state", {})):
                    with self.subTest(ctype=ctype), self.assertRaises(PolicyGridApiError) as caught:
                        call()
                    self.assertEqual((caught.exception.status, caught.exception.code), (502, "backend_error"))
                    self.assertIn("without a PolicyGrid envelope", caught.exception.message)
            finally:
                canned.stop()

    def test_remote_mode_refuses_an_answer_that_is_not_the_policys_result(self):
        canned = support.CannedAnswer(200, b"<html>sign in</html>", "text/html")
        try:
            ev = LocalPolicyEvaluator(URI, mode="remote", executor_id="local", server=canned.url, timeout=2)
            with self.assertRaises(PolicyGridApiError) as caught:
                ev.execute_policy_rule({"ip": "10.0.0.1"})
            self.assertEqual((caught.exception.status, caught.exception.code), (502, "backend_error"))
            self.assertIn(canned.url, caught.exception.message)
        finally:
            canned.stop()


if __name__ == "__main__":
    unittest.main()
