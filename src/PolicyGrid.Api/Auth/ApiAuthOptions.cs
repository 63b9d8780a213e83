using Microsoft.Extensions.Options;

namespace PolicyGrid.Api.Auth;

/// <summary>
/// API tokens (configuration section <c>PolicyGrid:Auth</c>). With none configured the API is open,
/// which <c>serve</c> only allows on loopback (or with --insecure); with any configured, every
/// request needs one.
/// </summary>
public sealed class ApiAuthOptions
{
    public const string Section = "PolicyGrid:Auth";

    public List<ApiToken> Tokens { get; set; } = [];

    /// <summary>
    /// With tokens configured, lets <c>GET</c>/<c>HEAD /bundles/sha256/{hex}</c> through without one: a bundle is
    /// addressed by its content's hash, so whoever knows the hash may have the bytes. An executor node sets it for
    /// its Type 3 job pods, which fetch the bundle they were given and hold no API token.
    /// </summary>
    public bool AnonymousBundleDownloads { get; set; }

    public bool Enabled => Tokens.Count > 0;
}

/// <summary>One bearer token: who it is (recorded in the decision log) and what it may do.</summary>
public sealed class ApiToken
{
    public string Name { get; set; } = "";
    public string Token { get; set; } = "";
    public List<string> Scopes { get; set; } = [ApiScopes.Read];
}

public static class ApiScopes
{
    public const string Read = "read";
    public const string Write = "write";
}

/// <summary>Refuses a token list a careless operator could lock themselves out with, or leak through.</summary>
public sealed class ApiAuthOptionsValidator : IValidateOptions<ApiAuthOptions>
{
    public const int MinimumTokenLength = PolicyGrid.Core.Identity.ApiTokens.MinimumLength;

    public ValidateOptionsResult Validate(string? name, ApiAuthOptions options)
    {
        var failures = new List<string>();
        for (var i = 0; i < options.Tokens.Count; i++)
        {
            var t = options.Tokens[i];
            var at = $"{ApiAuthOptions.Section}:Tokens:{i}";
            if (string.IsNullOrWhiteSpace(t.Name)) failures.Add($"{at}:Name is empty; every token needs a name (it is recorded as the caller)");
            if (t.Token.Length < MinimumTokenLength) failures.Add($"{at}:Token is shorter than {MinimumTokenLength} characters");
            if (t.Scopes.Count == 0) failures.Add($"{at}:Scopes is empty; use [\"read\"] or [\"read\", \"write\"]");
            foreach (var s in t.Scopes.Where(s => s is not (ApiScopes.Read or ApiScopes.Write)))
                failures.Add($"{at}:Scopes has '{s}'; the scopes are 'read' and 'write'");
        }
        foreach (var dup in options.Tokens.GroupBy(t => t.Token).Where(g => g.Count() > 1 && g.Key.Length > 0))
            failures.Add($"{ApiAuthOptions.Section}:Tokens: the same token is configured for {string.Join(", ", dup.Select(t => t.Name))}");
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
