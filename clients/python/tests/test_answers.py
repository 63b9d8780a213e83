"""Answers a policy can give that have no JSON form: local mode answers them as the server does (422 policy_error in its
words), keeps nothing of the context such a call left, and serves on."""
import sys
import tempfile
import unittest

import support
from policygrid import LocalPolicyEvaluator, PolicyGridApiError

URI = "answers:1.0-beta"
DOC = {
    "policy_rule_uri": URI, "name": "answers", "version": "1.0", "release_tag": "beta",
    "type": "python_class_v1", "status": "active", "policy_parameters": {}, "policy_settings": {},
}

POLICY = r'''
import sys


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no text for you")


class Stop(BaseException):
    pass


class AIOSv1PolicyRule:
    def __init__(self, rule_id, settings, parameters):
        pass

    def eval(self, parameters, input_data, context):
        mode = input_data.get("mode")
        if mode == "colliding_result":
            return {"n": {True: 1, "true": 2}}
        if mode == "colliding_context":
            context[1] = "a"
            context["1"] = "b"
            return {"ok": True}
        if mode == "surrogate_value":
            return {"s": "\ud800"}
        if mode == "surrogate_key":
            return {"\udc00": 1}
        if mode == "surrogate_context":
            context["s"] = ["\ud800"]
            return {"ok": True}
        if mode == "nan_result":
            return {"x": float("nan")}
        if mode == "infinity_context":
            context["x"] = float("inf")
            return {"ok": True}
        if mode == "set_result":
            return {"x": {1, 2}}
        if mode == "huge_int_result":
            return {"x": [10 ** 5000]}
        if mode == "huge_int_context":
            context["x"] = 10 ** 5000
            return {"ok": True}
        if mode == "list":
            context["x"] = 1
            return [1, 2]
        if mode == "none":
            return None
        if mode == "raises":
            context["x"] = 1
            raise ValueError("boom")
        if mode == "cycle_result":
            answer = {}
            answer["self"] = answer
            return answer
        if mode == "cycle_context":
            context["self"] = [context]
            return {"ok": True}
        if mode == "sys_exit":
            context["x"] = 1
            sys.exit(0)
        if mode == "generator_exit":
            raise GeneratorExit()
        if mode == "base_exception":
            raise Stop("halt")
        if mode == "interrupt":
            raise KeyboardInterrupt()
        if mode == "signal_self":
            import os, signal
            os.kill(os.getpid(), signal.SIGUSR1)  # the caller's handler runs here and raises SystemExit
            return {"handler": "did not run"}
        if mode == "unprintable":
            raise Unprintable()
        if mode == "surrogate_message":
            raise ValueError("caf\udce9")
        if mode == "huge_message":
            raise ValueError("x" * (10 << 20))
        if mode == "nested":
            answer = {}
            for _ in range(input_data["levels"] - 1):
                answer = {"a": answer}
            return answer
        context["calls"] = context.get("calls", 0) + 1
        return {"calls": context["calls"], "keys": sorted(k for k in context if k != "calls"), "text": input_data.get("text")}

    def management(self, action, data):
        if action == "colliding":
            return {None: 1, "null": 2}
        if action == "surrogate":
            return {"s": "\ud800"}
        if action == "nan":
            return {"x": float("-inf")}
        if action == "list":
            return [1, 2]
        if action == "huge_int":
            return {10 ** 5000: 1}
        if action == "none":
            return None
        if action == "sys_exit":
            sys.exit(3)
        if action == "unprintable":
            raise Unprintable()
        return {"ok": True}
'''

# The server's words for each (tests/PolicyGrid.Api.Tests/ExecutionTests.cs; the .NET SDK says the same).
EVAL_CASES = {
    "colliding_result": "Duplicate property 'true'",
    "colliding_context": "Duplicate property '1'",
    "surrogate_value": "'\\ud800' is a lone surrogate",
    "surrogate_key": "'\\udc00' is a lone surrogate",
    "surrogate_context": "'\\ud800' is a lone surrogate",
    "nan_result": "TypeError: policy returned a value that is not JSON: Out of range float values are not JSON compliant",
    "infinity_context": "TypeError: policy returned a value that is not JSON: Out of range float values are not JSON compliant",
    "set_result": "TypeError: policy returned a value that is not JSON: Object of type set is not JSON serializable",
    # Python writes no int of more than 4300 digits: the server's worker answers its 422. Locally the result was handed
    # back, and the context raised a bare ValueError and was kept, so every later call failed the same way.
    "huge_int_result": "TypeError: policy returned a value that is not JSON: Exceeds the limit (4300 digits)",
    "huge_int_context": "TypeError: policy returned a value that is not JSON: Exceeds the limit (4300 digits)",
    "list": f"eval of {URI} returned a list, not a dict",
    "none": f"eval of {URI} returned None, not a dict",
    "raises": "ValueError: boom",
    # What the policy raises, any BaseException but KeyboardInterrupt, is its error, in the worker host's words: sys.exit()
    # in eval used to end the caller's process (with status 0), a __str__ that raised escaped as its own exception, a
    # lone surrogate reached the caller's logging raw, and a 10 MB message was handed on whole.
    # A value that holds itself: the walk stopped at its depth limit and called it nested too deep.
    "cycle_result": "TypeError: policy returned a value that is not JSON: Circular reference detected",
    "cycle_context": "TypeError: policy returned a value that is not JSON: Circular reference detected",
    "sys_exit": "SystemExit: 0",
    "generator_exit": "GeneratorExit: ",
    "base_exception": "Stop: halt",
    "unprintable": "Unprintable: <str() of the Unprintable raised RuntimeError>",
    "surrogate_message": "ValueError: caf\\udce9",
    "huge_message": "more characters)",
}

MANAGEMENT_CASES = {
    "colliding": "Duplicate property 'null'",
    "surrogate": "'\\ud800' is a lone surrogate",
    "nan": "TypeError: policy returned a value that is not JSON: Out of range float values are not JSON compliant",
    "list": f"management of {URI} returned a list, not a dict",
    "huge_int": "TypeError: policy returned a value that is not JSON: Exceeds the limit (4300 digits)",
    "sys_exit": "SystemExit: 3",
    "unprintable": "Unprintable: <str() of the Unprintable raised RuntimeError>",
}


class AnswerTests(unittest.TestCase):
    def setUp(self):
        self.cache = tempfile.TemporaryDirectory()
        self.registry = support.LoopbackRegistry(DOC, support.zip_bytes({"code/function.py": POLICY.encode()}))
        self.ev = self.evaluator()

    def evaluator(self):
        return LocalPolicyEvaluator(URI, server=self.registry.url, cache_dir=self.cache.name, timeout=2, revalidate_seconds=3600)

    def tearDown(self):
        self.registry.stop()
        self.cache.cleanup()

    def test_an_eval_answer_without_a_json_form_is_a_policy_error_as_on_the_server_and_the_evaluator_serves_on(self):
        for mode, named in EVAL_CASES.items():
            with self.subTest(mode):
                ev = self.evaluator()
                self.assertEqual(ev.execute_policy_rule({"mode": "plain"})["calls"], 1)
                with self.assertRaises(PolicyGridApiError) as caught:
                    ev.execute_policy_rule({"mode": mode})
                self.assertEqual((caught.exception.status, caught.exception.code), (422, "policy_error"))
                self.assertIn(named, caught.exception.message)
                if mode.startswith("colliding"):
                    self.assertIn("use string keys", caught.exception.message)
                # As on the server, nothing the failed call left in the context is kept: the count goes on, no other key.
                after = ev.execute_policy_rule({"mode": "plain", "text": "é ✓ 日本 😀"})
                self.assertEqual((after["calls"], after["keys"], after["text"]), (2, [], "é ✓ 日本 😀"))

    def test_a_policy_error_message_is_cut_to_16_kib(self):
        with self.assertRaises(PolicyGridApiError) as caught:
            self.ev.execute_policy_rule({"mode": "huge_message"})
        self.assertLess(len(caught.exception.message), 20_000)

    def test_a_keyboard_interrupt_in_eval_is_the_callers_and_goes_on_up(self):
        with self.assertRaises(KeyboardInterrupt):
            self.ev.execute_policy_rule({"mode": "interrupt"})
        self.assertEqual(self.ev.execute_policy_rule({"mode": "plain"})["calls"], 1)

    def test_a_system_exit_the_callers_signal_handler_raises_during_eval_goes_on_up(self):
        import signal
        previous = signal.signal(signal.SIGUSR1, lambda *_: sys.exit(5))
        try:
            with self.assertRaises(SystemExit) as caught:
                self.ev.execute_policy_rule({"mode": "signal_self"})
            self.assertEqual(caught.exception.code, 5)
        finally:
            signal.signal(signal.SIGUSR1, previous)

    def load_failure(self, name: str, source: str) -> PolicyGridApiError:
        """What making an evaluator of a policy named ``name`` with ``source`` as its code/function.py raises (a 422)."""
        uri = f"{name}:1.0-beta"
        registry = support.LoopbackRegistry(dict(DOC, policy_rule_uri=uri, name=name), support.zip_bytes({"code/function.py": source.encode()}))
        try:
            with self.assertRaises(PolicyGridApiError) as caught:
                LocalPolicyEvaluator(uri, server=registry.url, cache_dir=self.cache.name, timeout=2)
        finally:
            registry.stop()
        self.assertEqual((caught.exception.status, caught.exception.code), (422, "policy_error"))
        return caught.exception

    def test_init_calling_sys_exit_is_a_policy_error_not_the_end_of_the_caller(self):
        failure = self.load_failure("quits", "import sys\nclass AIOSv1PolicyRule:\n    def __init__(self, *args):\n        sys.exit(1)\n")
        # As the servers and both .NET modes word it (it said "AIOSv1PolicyRule.__init__ of quits:1.0-beta raised ...").
        self.assertEqual(failure.message, "policy quits:1.0-beta cannot be loaded: AIOSv1PolicyRule.__init__ raised SystemExit: 1")

    def test_a_class_whose_eval_cannot_be_called_fails_to_load_naming_it(self):
        for name, methods, message in (
                ("noeval", "    def evaluate(self, parameters, input_data, context):\n        return {}\n",
                 "policy noeval:1.0-beta cannot be loaded: AIOSv1PolicyRule has no eval(parameters, input_data, context) method"),
                ("oneargeval", "    def eval(self, input_data):\n        return {}\n",
                 "AIOSv1PolicyRule.eval(input_data) cannot be called as eval(parameters, input_data, context)")):
            with self.subTest(name):
                source = "class AIOSv1PolicyRule:\n    def __init__(self, rule_id, settings, parameters):\n        pass\n" + methods
                self.assertIn(message, self.load_failure(name, source).message)

    def test_a_policy_whose_import_fails_is_worded_as_the_servers_word_it(self):
        self.assertEqual(self.load_failure("broken", "raise ValueError('no allowlist')\n").message,
                         "policy broken:1.0-beta cannot be loaded: importing code/function.py raised ValueError: no allowlist")

    def test_an_answer_nested_as_deep_as_the_server_takes_is_answered_and_a_deeper_one_is_a_policy_error(self):
        self.assertIsInstance(self.ev.execute_policy_rule({"mode": "nested", "levels": 200}), dict)
        with self.assertRaises(PolicyGridApiError) as caught:
            self.ev.execute_policy_rule({"mode": "nested", "levels": 300})
        self.assertEqual(caught.exception.code, "policy_error")
        self.assertIn("nested too deep", caught.exception.message)

    def test_a_management_answer_without_a_json_form_is_a_policy_error_as_on_the_server(self):
        for action, named in MANAGEMENT_CASES.items():
            with self.subTest(action):
                with self.assertRaises(PolicyGridApiError) as caught:
                    self.ev.execute_mgmt_command(action)
                self.assertEqual((caught.exception.status, caught.exception.code), (422, "policy_error"))
                self.assertIn(named, caught.exception.message)
                self.assertEqual(self.ev.execute_mgmt_command("get"), {"ok": True})

    def test_management_answering_none_is_an_empty_dict_as_on_the_server(self):
        self.assertEqual(self.ev.execute_mgmt_command("none"), {})




KEEPER_URI = "keeper:1.0-beta"
KEEPER_DOC = dict(DOC, policy_rule_uri=KEEPER_URI, name="keeper")

# Keeps things in its context the way a policy author might, and reports what the next call finds there.
KEEPER = r'''
import datetime


class AIOSv1PolicyRule:
    def __init__(self, rule_id, settings, parameters):
        self.seen = None
        self.history = []

    def eval(self, parameters, input_data, context):
        mode = input_data["mode"]
        if mode == "history":
            self.history.append(input_data["entry"])
            return {"history": self.history, "pair": (1, 2), "by_number": {7: "seven"}}
        if mode == "store":
            context["pair"] = (1, 2)
            context[7] = "seven"
            self.seen = context.setdefault("seen", [])
            self.seen.append("first")
            return {}
        if mode == "mutate_held":
            self.seen.append("behind the context's back")  # on a server this list is no longer the context's
            return {}
        if mode == "set":
            context["tags"] = {"a"}
            return {}
        if mode == "datetime":
            context["at"] = datetime.datetime(2026, 1, 1)
            return {}
        return {"pair": type(context.get("pair")).__name__, "keys": sorted(map(repr, context)), "seen": context.get("seen")}

    def management(self, action, data):
        return {"history": self.history}
'''


class ContextAsOnTheServerTests(unittest.TestCase):
    """The context a local evaluator hands the next call is the one the servers would: read back from its JSON."""

    def setUp(self):
        self.cache = tempfile.TemporaryDirectory()
        self.registry = support.LoopbackRegistry(KEEPER_DOC, support.zip_bytes({"code/function.py": KEEPER.encode()}))
        self.ev = LocalPolicyEvaluator(KEEPER_URI, server=self.registry.url, cache_dir=self.cache.name, timeout=2,
                                       revalidate_seconds=3600)

    def tearDown(self):
        self.registry.stop()
        self.cache.cleanup()

    def test_the_next_call_sees_the_context_as_json_gives_it_back_not_the_objects_the_last_one_left(self):
        # A tuple stayed a tuple and the key 7 stayed an int locally; the servers hand the next call a list and "7".
        self.ev.execute_policy_rule({"mode": "store"})
        seen = self.ev.execute_policy_rule({"mode": "read"})
        self.assertEqual((seen["pair"], seen["keys"]), ("list", ["'7'", "'pair'", "'seen'"]))

    def test_a_list_the_instance_still_holds_no_longer_changes_the_context(self):
        # Locally the held list was the context's own, so appending to it changed the context; on a server it is not.
        self.ev.execute_policy_rule({"mode": "store"})
        self.ev.execute_policy_rule({"mode": "mutate_held"})
        self.assertEqual(self.ev.execute_policy_rule({"mode": "read"})["seen"], ["first"])

    def test_an_answer_is_what_json_gives_back_not_the_objects_the_policy_keeps(self):
        # Locally the answer was eval's own dict: appending to its list appended to the instance's history, and the tuple
        # and the int key came back as they were, where every server answers a list and "7".
        answer = self.ev.execute_policy_rule({"mode": "history", "entry": "first"})
        self.assertEqual(answer, {"history": ["first"], "pair": [1, 2], "by_number": {"7": "seven"}})
        answer["history"].append("the caller's own")
        self.assertEqual(self.ev.execute_policy_rule({"mode": "history", "entry": "second"})["history"], ["first", "second"])

    def test_a_management_answer_is_what_json_gives_back_not_the_objects_the_policy_keeps(self):
        self.ev.execute_policy_rule({"mode": "history", "entry": "first"})
        self.ev.execute_mgmt_command("history")["history"].append("the caller's own")
        self.assertEqual(self.ev.execute_mgmt_command("history"), {"history": ["first"]})

    def test_a_context_holding_what_json_cannot_is_the_server_s_policy_error_and_is_not_kept(self):
        self.ev.execute_policy_rule({"mode": "store"})
        for mode, named in (("set", "Object of type set is not JSON serializable"),
                            ("datetime", "Object of type datetime is not JSON serializable")):
            with self.subTest(mode):
                with self.assertRaises(PolicyGridApiError) as caught:
                    self.ev.execute_policy_rule({"mode": mode})
                self.assertEqual((caught.exception.status, caught.exception.code), (422, "policy_error"))
                self.assertIn(named, caught.exception.message)
                self.assertEqual(self.ev.execute_policy_rule({"mode": "read"})["keys"], ["'7'", "'pair'", "'seen'"])


if __name__ == "__main__":
    unittest.main()
