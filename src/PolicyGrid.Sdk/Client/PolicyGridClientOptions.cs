using System.Text.Json.Nodes;

namespace PolicyGrid.Sdk.Client;

/// <summary>Where the server is and how to talk to it.</summary>
public sealed record PolicyGridClientOptions
{
    /// <summary>The `policygrid serve` default; override with POLICYGRID_SERVER or this property.</summary>
    public static readonly Uri DefaultServer = new("http://127.0.0.1:10000");

    public Uri Server { get; init; } = FromEnvironment();

    /// <summary>Sent as <c>Authorization: Bearer</c>; defaults to POLICYGRID_TOKEN.</summary>
    public string? Token { get; init; } = TokenFromEnvironment();

    internal static string? TokenFromEnvironment() => Environment.GetEnvironmentVariable("POLICYGRID_TOKEN");

    /// <summary>Per request. Past it the call fails closed with <see cref="PolicyGridUnreachableException"/>.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Called with each of a success's <c>warnings</c> (the request was done, but a field was ignored or something in it
    /// will not work yet), whichever method made the call: the typed ones answer only <c>data</c>, so this is where their
    /// warnings go. Runs on the calling thread before the call returns; an exception it throws is the call's.
    /// </summary>
    public Action<PolicyGridWarning>? OnWarning { get; init; }

    private static Uri FromEnvironment() => ServerFrom(Environment.GetEnvironmentVariable("POLICYGRID_SERVER"));

    /// <summary>
    /// POLICYGRID_SERVER as a Uri. A value that is no absolute URL (<c>127.0.0.1:10001</c>, the scheme left out) is kept,
    /// so the client refuses it naming it: it used to be replaced by <see cref="DefaultServer"/> without a word, and
    /// calls went to whatever server listened there.
    /// </summary>
    internal static Uri ServerFrom(string? value)
    {
        if (string.IsNullOrWhiteSpace(value)) return DefaultServer;
        var text = value.Trim();
        return Uri.TryCreate(text, UriKind.Absolute, out var absolute) ? absolute
            : Uri.TryCreate(text, UriKind.Relative, out var relative) ? relative
            : new Uri(Uri.EscapeDataString(text), UriKind.Relative);
    }
}

/// <summary>One warning of a successful call, with the request that got it.</summary>
public sealed record PolicyGridWarning(string Method, string Path, string Message)
{
    public override string ToString() => $"{Method} {Path}: {Message}";
}

/// <summary><c>?limit=&amp;skip=&amp;sort=field:asc|desc</c> of the query endpoints.</summary>
public sealed record QueryOptions(int? Limit = null, int? Skip = null, string? Sort = null)
{
    internal string ToQueryString()
    {
        var parts = new List<string>();
        if (Limit is { } l) parts.Add($"limit={l}");
        if (Skip is { } s) parts.Add($"skip={s}");
        if (!string.IsNullOrEmpty(Sort)) parts.Add($"sort={Uri.EscapeDataString(Sort)}");
        return parts.Count == 0 ? "" : "?" + string.Join('&', parts);
    }
}

/// <summary>What <c>POST /bundles</c> answers: either <see cref="Code"/> or <see cref="Url"/> can be a policy's <c>code</c>.</summary>
public sealed record BundleUpload(string Code, string Sha256, long Size, string Url);

/// <summary>A policy document with its revision (the <c>ETag</c>) and whether the server flagged it deprecated.</summary>
public sealed record PolicyRevision(JsonObject Document, string? ETag, bool Deprecated);

/// <summary>An executor or graph document with its revision (the <c>ETag</c>), for a conditional update or delete (<c>ifMatch</c>).</summary>
public sealed record DocumentRevision(JsonObject Document, string? ETag);

/// <summary>Body of <c>POST /executor/{id}/execute_policy</c>.</summary>
public sealed record ExecutePolicyRequest(string PolicyRuleUri, JsonNode? InputData)
{
    public JsonObject? Parameters { get; init; }
    public JsonObject? Settings { get; init; }
    public string? ContextKey { get; init; }
    public double? TimeoutSeconds { get; init; }

    internal JsonObject ToJson()
    {
        var body = new JsonObject { ["policy_rule_uri"] = PolicyRuleUri, ["input_data"] = InputData?.DeepClone() };
        if (Parameters is { Count: > 0 }) body["parameters"] = Parameters.DeepClone();
        if (Settings is { Count: > 0 }) body["settings"] = Settings.DeepClone();
        if (ContextKey is not null) body["context_key"] = ContextKey;
        if (TimeoutSeconds is { } t) body["timeout_seconds"] = t;
        return body;
    }
}

/// <summary>Body of <c>POST /executor/{id}/management</c>.</summary>
public sealed record ManagementRequest(string PolicyRuleUri, string Action, JsonNode? Data)
{
    public JsonObject? Parameters { get; init; }
    public JsonObject? Settings { get; init; }
    public double? TimeoutSeconds { get; init; }

    internal JsonObject ToJson()
    {
        var body = new JsonObject { ["policy_rule_uri"] = PolicyRuleUri, ["action"] = Action, ["data"] = Data?.DeepClone() ?? new JsonObject() };
        if (Parameters is { Count: > 0 }) body["parameters"] = Parameters.DeepClone();
        if (Settings is { Count: > 0 }) body["settings"] = Settings.DeepClone();
        if (TimeoutSeconds is { } t) body["timeout_seconds"] = t;
        return body;
    }
}
