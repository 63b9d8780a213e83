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


if __name__ == "__main__":
    unittest.main()
