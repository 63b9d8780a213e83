using PolicyGrid.Core.Errors;

namespace PolicyGrid.Core.Tests;

/// <summary>Small conveniences for writing documents and checking the errors a caller would see.</summary>
internal static class J
{
    public static JsonObject O(string json) => JsonNode.Parse(json)!.AsObject();

    public static JsonNode? N(string json) => JsonNode.Parse(json);

    /// <summary>Runs <paramref name="action"/>, expecting a 400, and returns the exception.</summary>
    public static PolicyGridException Rejects(Action action)
    {
        var e = Should.Throw<PolicyGridException>(action);
        e.Status.ShouldBe(400);
        return e;
    }

    public static PolicyGridException Rejects(Func<object?> action) => Rejects(() => { action(); });

    /// <summary>The error paths of a validation failure, for compact assertions.</summary>
    public static string[] Paths(this PolicyGridException e) => e.Errors.Select(x => x.Path).ToArray();

    public static string[] Paths(this IReadOnlyList<FieldError> errors) => errors.Select(x => x.Path).ToArray();
}
