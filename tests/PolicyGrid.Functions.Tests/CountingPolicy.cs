namespace PolicyGrid.Functions.Tests;

/// <summary>The stateful policy the function tests run: an instance counter with get_state/set_state and a context tally.</summary>
internal static class CountingPolicy
{
    public const string Source = """
        import os
        import time

        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                self.count = 0
                self.step = parameters.get("step", 1)

            def eval(self, parameters, input_data, context):
                if input_data.get("fail"):
                    raise ValueError("asked to fail")
                if "hold" in input_data:
                    # Blocks this instance's turn until the test creates the file (bounded, so a bug cannot hang CI).
                    give_up = time.time() + 20
                    while not os.path.exists(input_data["hold"]) and time.time() < give_up:
                        time.sleep(0.01)
                self.count += self.step
                context["evals"] = context.get("evals", 0) + 1
                return {"count": self.count, "evals": context["evals"]}

            def management(self, action, data):
                if action == "set":
                    self.count = data["count"]
                    return {"count": self.count}
                if action == "peek":
                    return {"count": self.count}
                raise ValueError("unknown action " + action)

            def get_state(self):
                return {"count": self.count}

            def set_state(self, state):
                self.count = state.get("count", 0)
        """;

    /// <summary>
    /// Counts on the instance and in context; its get_state() answers the count in a list after a call given
    /// <c>{"shape": "list"}</c>. That list used to be saved as <c>{"value": [n]}</c>, and set_state() got it back so.
    /// </summary>
    public const string ListState = """
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                self.count = 0
                self.shape = "dict"
            def eval(self, parameters, input_data, context):
                self.count += 1
                self.shape = input_data.get("shape", "dict")
                context["evals"] = context.get("evals", 0) + 1
                return {"count": self.count, "evals": context["evals"]}
            def get_state(self):
                return [self.count] if self.shape == "list" else {"count": self.count}
            def set_state(self, state):
                self.count = state["count"]
        """;

    /// <summary>Counts its calls and saves the count, but its set_state() always raises: it cannot come back after a restart.</summary>
    public const string CannotRestore = """
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                self.count = 0
            def eval(self, parameters, input_data, context):
                self.count += 1
                return {"count": self.count}
            def get_state(self):
                return {"count": self.count}
            def set_state(self, state):
                raise RuntimeError("cannot restore")
        """;

    /// <summary>Raises while it is created: every deployment of it fails to load.</summary>
    public const string FailsToLoad = """
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                raise RuntimeError("no licence on this host")
            def eval(self, parameters, input_data, context):
                return {}
        """;

    /// <summary>Counts on the instance and in context, then raises when asked: what a call changed before it raised must not stay.</summary>
    public const string Halfway = """
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                self.count = 0
            def eval(self, parameters, input_data, context):
                self.count += 1
                context["evals"] = context.get("evals", 0) + 1
                if input_data.get("fail"):
                    raise ValueError("counted, then failed")
                return {"count": self.count, "evals": context["evals"]}
            def management(self, action, data):
                self.count += 100
                raise ValueError("counted a hundred, then failed")
            def get_state(self):
                return {"count": self.count}
            def set_state(self, state):
                self.count = state["count"]
        """;

    /// <summary>
    /// An allowlist without get_state whose add_ip (and eval with "mark") change the instance first and then, when asked,
    /// raise ("fail") or answer something that is no dict ("refuse"): a failed call must not leave its change behind.
    /// </summary>
    public const string HalfwayAllowList = """
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                self.ips = []
                self.marks = 0
            def eval(self, parameters, input_data, context):
                if input_data.get("mark"):
                    self.marks += 1
                    if input_data.get("fail"):
                        raise ValueError("marked, then failed")
                    if input_data.get("refuse"):
                        return None
                return {"ips": self.ips, "marks": self.marks}
            def management(self, action, data):
                self.ips.append(data["ip"])
                if data.get("fail"):
                    raise ValueError("added %s, then failed" % data["ip"])
                if data.get("refuse"):
                    return [data["ip"]]
                return {"ips": self.ips}
        """;

    /// <summary>
    /// An allowlist managed by add_ip that also counts the calls it served; add_ip with refuse_after_evals raises on an
    /// instance that has served that many calls (a management action that fails on one instance and not another).
    /// </summary>
    public const string AllowListKeepingState = """
        import os
        import time

        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                self.ips = []
                self.evals = 0

            def eval(self, parameters, input_data, context):
                if "hold" in input_data:
                    give_up = time.time() + 20
                    while not os.path.exists(input_data["hold"]) and time.time() < give_up:
                        time.sleep(0.01)
                self.evals += 1
                return {"allowed": input_data.get("ip") in self.ips, "evals": self.evals}

            def management(self, action, data):
                if action == "add_ip":
                    if self.evals >= data.get("refuse_after_evals", 1000000):
                        raise ValueError("this instance has served %d calls" % self.evals)
                    self.ips.append(data["ip"])
                    return {"ips": self.ips}
                raise ValueError("unknown action " + action)

            def get_state(self):
                return {"ips": self.ips, "evals": self.evals}

            def set_state(self, state):
                self.ips = state["ips"]
                self.evals = state["evals"]
        """;

    /// <summary>The same allowlist without get_state/set_state: a recreated instance starts from the deployment.</summary>
    public static readonly string AllowList = AllowListKeepingState[..AllowListKeepingState.IndexOf("    def get_state", StringComparison.Ordinal)];

    /// <summary>
    /// A total without get_state that management action "add" raises by data.n (sleeping 1.5 s first when data.slow is
    /// set, so a test can act while it runs): a journal replayed twice, or in part, shows in the total.
    /// </summary>
    public const string Adder = """
        import time

        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                self.total = 0

            def eval(self, parameters, input_data, context):
                return {"total": self.total}

            def management(self, action, data):
                if data.get("slow"):
                    time.sleep(1.5)
                self.total += data["n"]
                return {"total": self.total}
        """;

    /// <summary>
    /// The allowlist without get_state whose eval raises while it has no IPs ("no allowlist yet", after counting the call), and
    /// when the input asks it to ("asked to fail"): an instance recreated without its management actions fails its first call.
    /// </summary>
    public static readonly string StrictAllowList = AllowList.Replace("        self.evals += 1\n",
        "        self.evals += 1\n        if input_data.get(\"fail\"):\n            raise ValueError(\"asked to fail\")\n" +
        "        if not self.ips:\n            raise ValueError(\"no allowlist yet\")\n", StringComparison.Ordinal);
}
