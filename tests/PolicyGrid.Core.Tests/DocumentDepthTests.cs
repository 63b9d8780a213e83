using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Core.Tests;

public class DocumentDepthTests
{
    private static JsonNode Nested(int depth, bool arrays = false)
    {
        JsonNode node = 1;
        for (var i = 0; i < depth; i++) node = arrays && i % 2 == 0 ? new JsonArray(node) : new JsonObject { ["a"] = node };
        return node;
    }

    [Fact]
    public void Up_to_the_limit_is_accepted_one_more_level_is_a_400_naming_the_path()
    {
        DocumentDepth.Ensure(Nested(DocumentDepth.Max), DocumentDepth.Max);
        var refused = Should.Throw<PolicyGridException>(() => DocumentDepth.Ensure(Nested(DocumentDepth.Max + 1), DocumentDepth.Max));
        refused.Status.ShouldBe(400);
        refused.Message.ShouldContain("a.a.a");
        refused.Message.ShouldContain("nests deeper than 32 levels");
    }

    [Fact]
    public void Arrays_count_as_levels_and_are_named_by_index()
    {
        DocumentDepth.Ensure(Nested(DocumentDepth.Max, arrays: true), DocumentDepth.Max);
        Should.Throw<PolicyGridException>(() => DocumentDepth.Ensure(Nested(DocumentDepth.Max + 1, arrays: true), DocumentDepth.Max)).Message.ShouldContain("[0]");
    }

    [Fact]
    public void A_very_deep_path_is_cut_in_the_message()
    {
        var refused = Should.Throw<PolicyGridException>(() => DocumentDepth.Ensure(Nested(500), DocumentDepth.MaxStored));
        refused.Message.Length.ShouldBeLessThan(400);
    }
}
