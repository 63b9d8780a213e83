"""Template checks agree with the server's (Core TemplateValidator) on the edges a caller can hit."""
import unittest

import support  # noqa: F401  (puts the SDK on the path when it is not installed)
from policygrid import templates


class TemplateTests(unittest.TestCase):
    def test_max_length_counts_strings_as_the_server_does(self):
        # The server counts UTF-16 code units: an emoji is two, so three of them exceed max_length 5.
        spec = {"name": {"type": "string", "max_length": 5}}
        self.assertEqual(templates.validate(spec, {"name": "\U0001F600" * 3}, "policy_parameters"),
                         ["policy_parameters.name: is 6 characters long, more than max_length 5"])
        self.assertEqual(templates.validate(spec, {"name": "abcde"}, "policy_parameters"), [])

    def test_a_huge_integer_is_an_answer_not_an_overflow(self):
        spec = {"limit": {"type": "integer", "max": 1000}}
        self.assertEqual(templates.validate(spec, {"limit": 10 ** 400}, "policy_parameters"),
                         [f"policy_parameters.limit: {10 ** 400} is greater than the maximum 1000"])
        self.assertEqual(templates.validate({"x": {"type": "integer"}}, {"x": 2.5}, "p"), ["p.x: must be an integer, not a number"])
        self.assertEqual(templates.validate({"x": {"type": "integer"}}, {"x": 2.0}, "p"), [])

    def test_patterns_read_as_json_schema_does_as_the_server_reads_them(self):
        spec = {"ip": {"type": "string", "pattern": r"^\d{1,3}(\.\d{1,3}){3}$"}}
        self.assertEqual(templates.validate(spec, {"ip": "10.0.0.1"}, "input_data"), [])
        for ip in ["10.0.0.1\n", "\u0661\u0660.\u0660.\u0660.\u0661", "10.0.0.1\r"]:
            self.assertEqual(templates.validate(spec, {"ip": ip}, "input_data"),
                             [r"input_data.ip: does not match ^\d{1,3}(\.\d{1,3}){3}$"])
        cases = [
            (r"^a.b$", "a\rb", False), (r"^a.b$", "a-b", True), (r"^[$.]+$", "$.", True), (r"^a\$$", "a$\n", False),
            (r"^[^]]$", "x]", True), (r"^[]$]x$", "$x", True), (r"(?m)^a$", "a\nb", True), (r"^(?#$ and .)x$", "x\n", False),
        ]
        for pattern, value, matches in cases:
            errors = templates.validate({"v": {"type": "string", "pattern": pattern}}, {"v": value}, "p")
            self.assertEqual(errors == [], matches, (pattern, value, errors))


if __name__ == "__main__":
    unittest.main()
