using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Graphs;

namespace PolicyGrid.Core.Tests;

public class GraphPlanTests
{
    private static GraphPlan Build(string[] ids, params (string From, string[] To)[] edges) =>
        GraphPlan.Build(ids, edges.ToDictionary(e => e.From, e => (IReadOnlyList<string>)e.To));

    private static PolicyGridException Rejected(string[] ids, params (string From, string[] To)[] edges)
    {
        var e = J.Rejects(() => Build(ids, edges));
        e.Code.ShouldBe(ErrorCodes.ValidationFailed);
        return e;
    }

    [Fact]
    public void A_diamond_runs_its_middle_in_parallel()
    {
        var plan = Build(["a", "b", "c", "d"], ("a", ["b", "c"]), ("b", ["d"]), ("c", ["d"]));
        plan.Levels.ShouldBe([["a"], ["b", "c"], ["d"]]);
        plan.Roots.ShouldBe(["a"]);
        plan.Sink.ShouldBe("d");
        plan.Parents("d").ShouldBe(["b", "c"]);
        plan.Children("a").ShouldBe(["b", "c"]);
        plan.Parents("a").ShouldBeEmpty();
        plan.Children("d").ShouldBeEmpty();
    }

    [Fact]
    public void A_chain_has_one_node_per_level()
    {
        var plan = Build(["x", "y", "z"], ("x", ["y"]), ("y", ["z"]));
        plan.Levels.ShouldBe([["x"], ["y"], ["z"]]);
        plan.Order.ShouldBe(["x", "y", "z"]);
    }

    [Fact]
    public void Fan_in_from_several_roots_to_one_sink()
    {
        var plan = Build(["r1", "r2", "r3", "sink"], ("r1", ["sink"]), ("r2", ["sink"]), ("r3", ["sink"]));
        plan.Roots.ShouldBe(["r1", "r2", "r3"]);
        plan.Levels.ShouldBe([["r1", "r2", "r3"], ["sink"]]);
    }

    [Fact]
    public void A_join_receives_parents_in_function_id_order_not_connection_order()
    {
        // The connections list the later parent first; the join still sees [p1, p2] as in graph_function_ids.
        var plan = Build(["src", "p1", "p2", "join"], ("p2", ["join"]), ("src", ["p2", "p1"]), ("p1", ["join"]));
        plan.Parents("join").ShouldBe(["p1", "p2"]);
        plan.Children("src").ShouldBe(["p2", "p1"]);
        plan.Levels.ShouldBe([["src"], ["p1", "p2"], ["join"]]);
    }

    [Fact]
    public void Levels_follow_the_longest_path_and_function_id_order()
    {
        // a -> d directly and via b -> c: d must wait for c.
        var plan = Build(["d", "c", "b", "a"], ("a", ["b", "d"]), ("b", ["c"]), ("c", ["d"]));
        plan.Levels.ShouldBe([["a"], ["b"], ["c"], ["d"]]);
        plan.Nodes.ShouldBe(["d", "c", "b", "a"]);
    }

    [Fact]
    public void Independent_branches_of_uneven_length_share_levels()
    {
        var plan = Build(["a", "b", "c", "x", "s"], ("a", ["b"]), ("b", ["c"]), ("c", ["s"]), ("x", ["s"]));
        plan.Levels.ShouldBe([["a", "x"], ["b"], ["c"], ["s"]]);
    }

    [Fact]
    public void A_single_node_is_root_and_sink()
    {
        var plan = Build(["only"]);
        plan.Roots.ShouldBe(["only"]);
        plan.Sink.ShouldBe("only");
        plan.Levels.ShouldBe([["only"]]);
    }

    [Fact]
    public void Empty_child_lists_are_sinks() => Build(["a", "b"], ("a", ["b"]), ("b", [])).Sink.ShouldBe("b");

    [Fact]
    public void Asking_about_an_unknown_node_is_a_programming_error() =>
        Should.Throw<ArgumentException>(() => Build(["a"]).Parents("zzz"));

    [Fact]
    public void An_empty_graph_is_rejected() =>
        Rejected([]).Errors.ShouldHaveSingleItem().ToString().ShouldBe("graph_function_ids: must name at least one function");

    [Fact]
    public void Duplicate_ids_are_rejected_naming_them() =>
        Rejected(["a", "b", "a"], ("b", ["a"])).Errors.ShouldHaveSingleItem().ToString().ShouldBe("graph_function_ids[2]: 'a' appears more than once");

    [Fact]
    public void Empty_ids_are_rejected() =>
        Rejected(["a", ""]).Paths().ShouldBe(["graph_function_ids[1]"]);

    [Fact]
    public void Unknown_nodes_in_connections_are_named_keys_and_children()
    {
        var e = Rejected(["a", "b"], ("a", ["b", "ghost"]), ("phantom", ["b"]));
        e.Errors.Select(x => x.ToString()).ShouldBe([
            "graph_connection_data.a: child 'ghost' is not in graph_function_ids",
            "graph_connection_data.phantom: 'phantom' is not in graph_function_ids"]);
    }

    [Fact]
    public void A_self_loop_is_rejected_naming_the_node() =>
        Rejected(["a", "b"], ("a", ["a", "b"])).Errors.ShouldHaveSingleItem().ToString().ShouldBe("graph_connection_data.a: 'a' connects to itself");

    [Fact]
    public void A_duplicate_child_is_rejected() =>
        Rejected(["a", "b"], ("a", ["b", "b"])).Errors.ShouldHaveSingleItem().Message.ShouldContain("child 'b' is listed more than once");

    [Fact]
    public void A_cycle_is_rejected_naming_the_nodes_on_it()
    {
        // start -> a -> b -> c -> a, c -> end: the cycle is a, b, c; start and end are not on it.
        var e = Rejected(["start", "a", "b", "c", "end"], ("start", ["a"]), ("a", ["b"]), ("b", ["c"]), ("c", ["a", "end"]));
        e.Errors.ShouldHaveSingleItem().ToString().ShouldBe("graph_connection_data: has a cycle: a -> b -> c -> a");
    }

    [Fact(Timeout = 20_000)]
    public async Task A_cycle_is_named_in_time_linear_in_the_graphs_size()
    {
        // Where the named cycle starts was found by testing each node before it against a list of the whole cycle: nodes x
        // cycle length. A 1 MiB body holds some 70,000 short ids ahead of a 30,000-node ring: 8 s of a request's CPU. Here
        // twice each: some 40 s that way, under 2 s now.
        var free = Enumerable.Range(0, 100_000).Select(i => $"f{i}");
        var ring = Enumerable.Range(0, 100_000).Select(i => $"r{i}").ToArray();
        var edges = ring.Select((node, i) => (node, new[] { ring[(i + 1) % ring.Length] })).ToArray();

        var e = await Task.Run(() => Rejected([.. free, .. ring], edges), TestContext.Current.CancellationToken);

        e.Message.ShouldContain("has a cycle: r0 -> r1 -> r2 -> ");
        e.Message.ShouldEndWith("r99999 -> r0");
    }

    [Fact]
    public void A_graph_that_is_all_cycle_is_rejected() =>
        Rejected(["a", "b"], ("a", ["b"]), ("b", ["a"])).Message.ShouldContain("has a cycle: a -> b -> a");

    [Fact]
    public void Two_sinks_are_rejected_naming_both()
    {
        var e = Rejected(["a", "b", "c"], ("a", ["b", "c"]));
        e.Errors.ShouldHaveSingleItem().Message.ShouldBe("must leave exactly one sink (a node with no children), but 2 nodes have none: b, c");
    }

    [Fact]
    public void A_disconnected_component_means_a_second_sink()
    {
        var e = Rejected(["a", "b", "lonely"], ("a", ["b"]));
        e.Message.ShouldContain("b, lonely");
    }

    [Fact]
    public void A_disconnected_looking_node_that_reaches_the_sink_is_fine() =>
        Build(["a", "b", "side"], ("a", ["b"]), ("side", ["b"])).Roots.ShouldBe(["a", "side"]);
}
