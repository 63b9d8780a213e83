"""Local mode: a management command that raises part way leaves nothing of itself behind, as in .NET WorkerProcess mode
and on Type 4 (the instance is rebuilt from the commands that succeeded, or from the state the last one left)."""
import os
import re
import sys
import tempfile
import threading
import unittest

import support
from policygrid import LocalPolicyEvaluator, PolicyGridApiError

URI = "guarded_allowlist:1.0"

# {state} is replaced by get_state/set_state, or by nothing. Each instance has a serial number: "pin" succeeds only on the
# instance whose number it is given, so replaying it on a rebuilt instance fails.
POLICY = '''
import itertools

_serials = itertools.count(1)


class AIOSv1PolicyRule:
    def __init__(self, rule_id, settings, parameters):
        self.serial = next(_serials)
        self.allow = list(parameters.get("local_allowlist", []))

    def eval(self, parameters, input_data, context):
        if input_data["ip"] == "boom":
            self.allow.append("10.6.6.6")
            raise ValueError("boom is no address")
        return {"allowed": input_data["ip"] in self.allow, "serial": self.serial}

    def management(self, action, data):
        if action in ("add_ip", "add_then_fail", "add_then_list"):
            self.allow.append(data["ip"])
        if action == "add_then_fail":
            raise ValueError("no room for " + data["ip"])
        if action == "add_then_list":
            return list(self.allow)
        if action in ("pin", "pin_read_only") and data["serial"] != self.serial:
            raise ValueError(f"pinned to instance {data['serial']}, not {self.serial}")
        return {"allow": self.allow, "serial": self.serial}
{state}'''

STATE = '''
    def get_state(self):
        if "10.9.9.9" in self.allow:
            raise ValueError("10.9.9.9 cannot be saved")
        if "10.8.8.8" in self.allow:
            return list(self.allow)
        return {"allow": self.allow}

    def set_state(self, state):
        if "10.5.5.5" in state["allow"]:
            raise ValueError("10.5.5.5 cannot be restored")
        self.allow = list(state["allow"])
'''

COMMANDS = [
    {"name": "add_ip", "schema": {}},
    {"name": "add_then_fail", "schema": {}},
    {"name": "add_then_list", "schema": {}},
    {"name": "pin", "schema": {}},
    {"name": "pin_read_only", "schema": {}, "read_only": True},
    {"name": "status", "schema": {}, "read_only": True},
]


class ManagementRollbackTests(unittest.TestCase):
    def setUp(self):
        self.cache = tempfile.TemporaryDirectory()
        self.registries = []

    def tearDown(self):
        for registry in self.registries:
            registry.stop()
        self.cache.cleanup()

    def evaluator(self, keeps_state: bool, **kw) -> LocalPolicyEvaluator:
        code = POLICY.replace("{state}", STATE if keeps_state else "")
        document = {"policy_rule_uri": URI, "name": "guarded_allowlist", "version": "1.0", "type": "python_class_v1",
                    "status": "active", "policy_parameters": {"local_allowlist": ["10.0.0.1"]}, "policy_settings": {},
                    "management_commands_schema": COMMANDS}
        registry = support.LoopbackRegistry(document, support.zip_bytes({"code/function.py": code.encode()}))
        self.registries.append(registry)
        self.registry = registry
        return LocalPolicyEvaluator(URI, server=registry.url, cache_dir=self.cache.name, timeout=2, revalidate_seconds=3600, **kw)

    @staticmethod
    def allowed(ev, ip: str) -> bool:
        return ev.execute_policy_rule({"ip": ip})["allowed"]

    def test_a_command_that_raises_part_way_leaves_nothing_of_itself_behind(self):
        # It used to be kept: the address appended before the check that raised was then allowed.
        for keeps_state in (False, True):
            with self.subTest(get_state=keeps_state):
                ev = self.evaluator(keeps_state)
                ev.execute_mgmt_command("add_ip", {"ip": "10.1.1.1"})
                with self.assertRaises(PolicyGridApiError) as caught:
                    ev.execute_mgmt_command("add_then_fail", {"ip": "10.2.2.2"})
                self.assertEqual((caught.exception.status, caught.exception.code), (422, "policy_error"))
                self.assertIn("ValueError: no room for 10.2.2.2", caught.exception.message)  # the command's own error
                self.assertFalse(self.allowed(ev, "10.2.2.2"))
                self.assertTrue(self.allowed(ev, "10.1.1.1"))
                self.assertTrue(self.allowed(ev, "10.0.0.1"))  # __init__ ran with the same parameters
                # The next command runs on the rebuilt instance and is kept as well.
                self.assertEqual(ev.execute_mgmt_command("add_ip", {"ip": "10.3.3.3"})["allow"], ["10.0.0.1", "10.1.1.1", "10.3.3.3"])

    def test_a_command_answering_no_dict_fails_and_leaves_nothing_of_itself_behind(self):
        for keeps_state in (False, True):
            with self.subTest(get_state=keeps_state):
                ev = self.evaluator(keeps_state)
                ev.execute_mgmt_command("add_ip", {"ip": "10.1.1.1"})
                with self.assertRaises(PolicyGridApiError) as caught:
                    ev.execute_mgmt_command("add_then_list", {"ip": "10.2.2.2"})
                self.assertEqual((caught.exception.status, caught.exception.code), (422, "policy_error"))
                self.assertEqual(caught.exception.message, f"management of {URI} returned a list, not a dict")
                self.assertFalse(self.allowed(ev, "10.2.2.2"))
                self.assertTrue(self.allowed(ev, "10.1.1.1"))

    def test_a_class_with_get_state_is_rebuilt_from_the_state_not_by_replaying_commands(self):
        ev = self.evaluator(keeps_state=True)
        serial = ev.execute_mgmt_command("status")["serial"]
        ev.execute_mgmt_command("pin", {"serial": serial})  # would fail if replayed on a new instance
        ev.execute_mgmt_command("add_ip", {"ip": "10.1.1.1"})
        with self.assertRaises(PolicyGridApiError):
            ev.execute_mgmt_command("add_then_fail", {"ip": "10.2.2.2"})
        answer = ev.execute_policy_rule({"ip": "10.1.1.1"})
        self.assertEqual((answer["allowed"], answer["serial"] != serial), (True, True))

    def test_a_get_state_that_raises_fails_the_command_and_leaves_nothing_of_it(self):
        ev = self.evaluator(keeps_state=True)
        ev.execute_mgmt_command("add_ip", {"ip": "10.1.1.1"})
        with self.assertRaises(PolicyGridApiError) as caught:
            ev.execute_mgmt_command("add_ip", {"ip": "10.9.9.9"})
        self.assertEqual((caught.exception.status, caught.exception.code), (422, "policy_error"))
        self.assertIn("get_state() after management raised ValueError: 10.9.9.9 cannot be saved", caught.exception.message)
        self.assertFalse(self.allowed(ev, "10.9.9.9"))
        self.assertTrue(self.allowed(ev, "10.1.1.1"))

    def test_a_get_state_answering_no_dict_fails_the_command_as_one_that_raises(self):
        # Its list was kept as it was, while the servers kept it as {"value": [...]}: set_state() got back another shape.
        ev = self.evaluator(keeps_state=True)
        ev.execute_mgmt_command("add_ip", {"ip": "10.1.1.1"})
        with self.assertRaises(PolicyGridApiError) as caught:
            ev.execute_mgmt_command("add_ip", {"ip": "10.8.8.8"})
        self.assertEqual((caught.exception.status, caught.exception.code, caught.exception.message),
                         (422, "policy_error", "get_state() after management answered a list, not a dict"))
        self.assertFalse(self.allowed(ev, "10.8.8.8"))
        self.assertTrue(self.allowed(ev, "10.1.1.1"))
        self.assertEqual(ev.execute_mgmt_command("add_ip", {"ip": "10.3.3.3"})["allow"], ["10.0.0.1", "10.1.1.1", "10.3.3.3"])

    def test_a_command_that_fails_on_replay_fails_every_call_until_a_new_revision(self):
        ev = self.evaluator(keeps_state=False)
        serial = ev.execute_mgmt_command("status")["serial"]
        ev.execute_mgmt_command("add_ip", {"ip": "10.1.1.1"})
        ev.execute_mgmt_command("pin", {"serial": serial})
        with self.assertRaises(PolicyGridApiError) as caught:
            ev.execute_mgmt_command("add_then_fail", {"ip": "10.2.2.2"})
        self.assertIn("no room for 10.2.2.2", caught.exception.message)
        for call in (lambda: self.allowed(ev, "10.1.1.1"), lambda: ev.execute_mgmt_command("status")):
            with self.assertRaises(PolicyGridApiError) as caught:
                call()
            self.assertEqual((caught.exception.status, caught.exception.code), (422, "policy_error"))
            self.assertRegex(caught.exception.message,
                             rf"^policy {URI} \(LocalPolicyEvaluator, local\) could not apply management 'pin' \(journal entry 2 of 2\) "
                             r"again after its instance was recreated: ValueError: pinned to instance \d+, not \d+; it tries again "
                             r"before its next call$")
        # A new revision starts afresh, without the commands.
        self.registry.update(policy_parameters={"local_allowlist": ["10.0.0.9"]})
        ev.refresh()
        self.assertTrue(self.allowed(ev, "10.0.0.9"))
        self.assertFalse(self.allowed(ev, "10.1.1.1"))

    def test_a_rebuild_that_fails_is_logged_as_a_warning_naming_the_policy_and_what_failed(self):
        # As .NET logs it in either isolation; local mode used to log nothing, so a service's log never said why its calls
        # failed until the rebuild succeeded.
        whose = f"policy {URI} (LocalPolicyEvaluator, local)"
        ev = self.evaluator(keeps_state=False)
        ev.execute_mgmt_command("pin", {"serial": ev.execute_mgmt_command("status")["serial"]})
        with self.assertRaises(PolicyGridApiError):
            ev.execute_mgmt_command("add_then_fail", {"ip": "10.2.2.2"})
        with self.assertLogs("policygrid", "WARNING") as logged, self.assertRaises(PolicyGridApiError):
            self.allowed(ev, "10.1.1.1")
        self.assertEqual(len(logged.records), 1)
        self.assertRegex(logged.records[0].getMessage(), rf"^{re.escape(whose)} could not replay management 'pin' \(journal entry 1 of 1\): "
                                                         r"ValueError: pinned to instance \d+, not \d+$")

        ev = self.evaluator(keeps_state=True)
        ev.execute_mgmt_command("add_ip", {"ip": "10.5.5.5"})
        with self.assertRaises(PolicyGridApiError):
            ev.execute_mgmt_command("add_then_fail", {"ip": "10.2.2.2"})
        for _ in range(2):  # every call tries the rebuild again, and says so
            with self.assertLogs("policygrid", "WARNING") as logged, self.assertRaises(PolicyGridApiError) as caught:
                self.allowed(ev, "10.5.5.5")
            self.assertEqual((caught.exception.status, caught.exception.code, caught.exception.message),
                             (422, "policy_error", f"{whose} could not restore its state with set_state() after its instance was "
                                                   "recreated: ValueError: 10.5.5.5 cannot be restored; it tries again before its next call"))
            self.assertEqual([r.getMessage() for r in logged.records],
                             [f"{whose} could not restore its state with set_state() after its instance was recreated: "
                              "ValueError: 10.5.5.5 cannot be restored"])

    def test_the_bound_refuses_a_command_before_a_rebuild_that_would_fail(self):
        # As .NET WorkerProcess mode and a Type 4 function answer it: the 409 runs nothing, a rebuild included. Local mode
        # rebuilt first, and answered the rebuild's 422 instead.
        ev = self.evaluator(keeps_state=False, max_journal_entries=1)
        serial = ev.execute_mgmt_command("status")["serial"]
        ev.execute_mgmt_command("pin", {"serial": serial})  # the journal is full; replayed, it fails
        with self.assertRaises(PolicyGridApiError):
            ev.execute_mgmt_command("pin_read_only", {"serial": -1})  # read-only commands pass the bound: this one fails
        with self.assertRaises(PolicyGridApiError) as caught:
            ev.execute_mgmt_command("add_ip", {"ip": "10.3.3.3"})
        self.assertEqual((caught.exception.status, caught.exception.code), (409, "conflict"))
        with self.assertRaises(PolicyGridApiError) as caught:
            self.allowed(ev, "10.0.0.1")
        self.assertEqual(caught.exception.status, 422)
        self.assertIn("could not apply management 'pin' (journal entry 1 of 1) again", caught.exception.message)

    def test_read_only_commands_are_not_kept_and_pass_the_bound(self):
        ev = self.evaluator(keeps_state=False, max_journal_entries=2)
        serial = ev.execute_mgmt_command("status")["serial"]
        ev.execute_mgmt_command("pin_read_only", {"serial": serial})  # replayed, it would fail on the rebuilt instance
        ev.execute_mgmt_command("add_ip", {"ip": "10.1.1.1"})
        ev.execute_mgmt_command("add_ip", {"ip": "10.2.2.2"})
        for _ in range(3):
            ev.execute_mgmt_command("status")
        with self.assertRaises(PolicyGridApiError) as caught:
            ev.execute_mgmt_command("add_ip", {"ip": "10.3.3.3"})
        self.assertEqual((caught.exception.status, caught.exception.code), (409, "conflict"))
        self.assertIn(f"policy {URI}: 2 management commands are kept to replay on a recreated instance (the limit, "
                      "max_journal_entries) because the policy class has no get_state", caught.exception.message)
        self.assertFalse(self.allowed(ev, "10.3.3.3"))  # it ran nothing
        with self.assertRaises(PolicyGridApiError):
            ev.execute_mgmt_command("add_then_fail", {"ip": "10.4.4.4"})  # refused as well: nothing of it is kept
        self.assertFalse(self.allowed(ev, "10.4.4.4"))
        # Rebuilt from the two kept commands, without the read-only pin.
        self.assertTrue(self.allowed(ev, "10.2.2.2"))
        self.assertEqual(ev.execute_mgmt_command("status")["allow"], ["10.0.0.1", "10.1.1.1", "10.2.2.2"])

    def test_a_class_with_get_state_keeps_no_journal_and_has_no_bound(self):
        ev = self.evaluator(keeps_state=True, max_journal_entries=1)
        for i in range(1, 5):
            ev.execute_mgmt_command("add_ip", {"ip": f"10.1.1.{i}"})
        self.assertTrue(self.allowed(ev, "10.1.1.4"))

    def test_an_eval_that_raises_keeps_the_instance(self):
        # As in WorkerProcess mode: what eval sets on self is not rebuilt anyway, and a rebuild per bad input would cost
        # every such call.
        ev = self.evaluator(keeps_state=False)
        ev.execute_mgmt_command("add_ip", {"ip": "10.1.1.1"})
        serial = ev.execute_policy_rule({"ip": "10.1.1.1"})["serial"]
        with self.assertRaises(PolicyGridApiError) as caught:
            ev.execute_policy_rule({"ip": "boom"})
        self.assertEqual((caught.exception.status, caught.exception.code), (422, "policy_error"))
        answer = ev.execute_policy_rule({"ip": "10.6.6.6"})
        self.assertEqual((answer["allowed"], answer["serial"]), (True, serial))

    @unittest.skipUnless(hasattr(os, "fork"), "needs os.fork")
    def test_a_child_forked_while_another_thread_is_in_a_command_has_nothing_of_it(self):
        # The command had appended its address when the fork came: the child's instance held it, allowed, though the command
        # never finished there.
        ev = self.evaluator(keeps_state=False)
        ev.execute_mgmt_command("add_ip", {"ip": "10.1.1.1"})
        module = sys.modules[f"_policygrid_bundle_{self.registry.sha[:20]}"]
        module.ENTERED, module.GATE = threading.Event(), threading.Event()
        management = module.AIOSv1PolicyRule.management

        def gated(instance, action, data):
            if action == "add_ip" and data["ip"] == "10.2.2.2":
                instance.allow.append(data["ip"])
                module.ENTERED.set()
                module.GATE.wait()
                instance.allow.remove(data["ip"])
            return management(instance, action, data)

        module.AIOSv1PolicyRule.management = gated
        caller = threading.Thread(target=ev.execute_mgmt_command, args=("add_ip", {"ip": "10.2.2.2"}))
        caller.start()
        try:
            self.assertTrue(module.ENTERED.wait(5))

            def child():
                return 0 if not self.allowed(ev, "10.2.2.2") and self.allowed(ev, "10.1.1.1") else 2

            self.assertEqual(0, support.in_a_forked_child(child))
        finally:
            module.GATE.set()
            caller.join()
            module.AIOSv1PolicyRule.management = management
        self.assertTrue(self.allowed(ev, "10.2.2.2"))  # the parent's command finished there as before

    def test_max_journal_entries_is_checked_at_construction(self):
        for bad, error in ((0, ValueError), (-3, ValueError), ("5", TypeError), (2.0, TypeError), (True, TypeError), (None, TypeError)):
            with self.subTest(max_journal_entries=bad), self.assertRaises(error) as caught:
                LocalPolicyEvaluator(URI, server="http://127.0.0.1:9", mode="remote", max_journal_entries=bad)
            self.assertIn("max_journal_entries must be", str(caught.exception))


if __name__ == "__main__":
    unittest.main()
