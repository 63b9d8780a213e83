using PolicyGrid.Core.Graphs;

namespace PolicyGrid.Core.Tests;

public class GraphDiagramTests
{
    [Fact]
    public void A_diamond_renders_as_a_mermaid_flowchart()
    {
        var plan = GraphPlan.Build(["a", "b", "c", "d"], new Dictionary<string, IReadOnlyList<string>>
        {
            ["a"] = ["b", "c"], ["b"] = ["d"], ["c"] = ["d"],
        });
        GraphDiagram.ToMermaid(plan).ShouldBe("""
            flowchart TD
                n0(["a"])
                n1["b"]
                n2["c"]
                n3(("d"))
                n0 --> n1
                n0 --> n2
                n1 --> n3
                n2 --> n3

            """.Replace("\r\n", "\n", StringComparison.Ordinal));
    }

    [Fact(Timeout = 15_000)]
    public async Task A_graph_of_many_roots_is_drawn_in_time_linear_in_its_size()
    {
        // Each node was looked up in the list of roots to pick its shape: nodes x roots, some 5e9 comparisons for a graph
        // of 100,000 roots stored before PolicyGrid:Graphs:MaxNodes bounded new ones.
        var roots = Enumerable.Range(0, 100_000).Select(i => $"r{i}").ToArray();
        var plan = GraphPlan.Build([.. roots, "sink"], roots.ToDictionary(r => r, _ => (IReadOnlyList<string>)["sink"]));

        var diagram = await Task.Run(() => GraphDiagram.ToMermaid(plan), TestContext.Current.CancellationToken);

        diagram.ShouldContain("    n99999([\"r99999\"])\n    n100000((\"sink\"))\n");
    }

    [Fact]
    public void Names_with_quotes_and_a_title_are_escaped()
    {
        var plan = GraphPlan.Build(["say \"hi\""], new Dictionary<string, IReadOnlyList<string>>());
        var text = GraphDiagram.ToMermaid(plan, "screen:1.0-beta");
        text.ShouldStartWith("---\ntitle: \"screen:1.0-beta\"\n---\nflowchart TD\n");
        text.ShouldContain("n0((\"say #quot;hi#quot;\"))");
    }

    [Theory]
    [InlineData("[beta:1.0-x", "\"[beta:1.0-x\"")]
    [InlineData("*alias:1.0-x", "\"*alias:1.0-x\"")]
    [InlineData("{a:1.0-x", "\"{a:1.0-x\"")]
    [InlineData("say\"\\hi:1.0-x", "\"say\\\"\\\\hi:1.0-x\"")]
    public void A_title_yaml_would_read_as_something_else_is_a_quoted_string(string title, string yaml)
    {
        var plan = GraphPlan.Build(["a"], new Dictionary<string, IReadOnlyList<string>>());
        GraphDiagram.ToMermaid(plan, title).ShouldStartWith($"---\ntitle: {yaml}\n---\n");
    }
}
