namespace PolicyGrid.Graphs.Tests;

/// <summary>Policies the graph tests deploy as nodes; each node's behaviour comes from its deployment parameters.</summary>
internal static class GraphPolicies
{
    /// <summary>
    /// Answers <c>{"by": tag, "got": input}</c>. With <c>fail</c> it raises; with <c>meet_dir</c>/<c>meet_other</c> it
    /// announces itself and waits for the other node to announce too (so two such nodes finish only if they overlap);
    /// with <c>hold</c> it waits for a file that the test may never create.
    /// </summary>
    public const string Node = """
        import os
        import time

        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                self.p = parameters

            def eval(self, parameters, input_data, context):
                p = self.p
                if p.get("fail"):
                    raise RuntimeError("node " + p["tag"] + " refused")
                if p.get("meet_dir"):
                    open(os.path.join(p["meet_dir"], p["tag"]), "w").close()
                    give_up = time.time() + 20
                    while not os.path.exists(os.path.join(p["meet_dir"], p["meet_other"])):
                        if time.time() > give_up:
                            raise RuntimeError(p["tag"] + " never met " + p["meet_other"])
                        time.sleep(0.005)
                if p.get("hold"):
                    give_up = time.time() + 20
                    while not os.path.exists(p["hold"]) and time.time() < give_up:
                        time.sleep(0.01)
                context["calls"] = context.get("calls", 0) + 1
                return {"by": p["tag"], "got": input_data, "calls": context["calls"]}
        """;
}
