"""Joins decisions: allowed only when every parent decision allowed.

Used as the sink of a policy graph; a join receives the list of its parents' outputs in the
order the parents appear in graph_function_ids.
"""


class AIOSv1PolicyRule:
    def __init__(self, rule_id, settings, parameters):
        self.rule_id = rule_id

    def eval(self, parameters, input_data, context):
        decisions = input_data if isinstance(input_data, list) else [input_data]
        denied = [i for i, d in enumerate(decisions) if not (isinstance(d, dict) and d.get("allowed") is True)]
        return {
            "allowed": not denied,
            "denied_by": denied,
            "decisions": decisions,
        }
