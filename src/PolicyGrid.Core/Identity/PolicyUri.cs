using System.Diagnostics.CodeAnalysis;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Core.Identity;

/// <summary>
/// <c>{name}:{version}-{release_tag}</c>. Parsed by splitting at the first ':' and then at the
/// last '-', so versions may hold '-' (1.0.0-rc1) while names and tags may not hold ':' / '-'.
/// The same rules name graphs.
/// </summary>
public sealed record PolicyUri(string Name, string Version, string ReleaseTag)
{
    public override string ToString() => $"{Name}:{Version}-{ReleaseTag}";

    public static PolicyUri Parse(string text, string field = "policy_rule_uri")
    {
        if (TryParse(text, out var uri, out var error)) return uri;
        throw Problems.Validation(field, error);
    }

    public static bool TryParse(string? text, [NotNullWhen(true)] out PolicyUri? uri, out string error)
    {
        uri = null;
        if (string.IsNullOrEmpty(text)) { error = "is empty; expected name:version-release_tag"; return false; }
        var colon = text.IndexOf(':', StringComparison.Ordinal);
        if (colon < 0) { error = $"'{text}' has no ':'; expected name:version-release_tag"; return false; }
        var name = text[..colon];
        var rest = text[(colon + 1)..];
        var dash = rest.LastIndexOf('-');
        if (dash < 0) { error = $"'{text}' has no '-' before the release tag; expected name:version-release_tag"; return false; }
        var version = rest[..dash];
        var tag = rest[(dash + 1)..];
        var candidate = new PolicyUri(name, version, tag);
        var problems = candidate.Check();
        if (problems.Count > 0) { error = $"'{text}': {string.Join("; ", problems.Select(p => p.ToString()))}"; return false; }
        uri = candidate;
        error = "";
        return true;
    }

    /// <summary>The rule each part must follow, as path-named errors (empty when valid).</summary>
    public IReadOnlyList<FieldError> Check(string nameField = "name", string versionField = "version", string tagField = "release_tag")
    {
        var errors = new List<FieldError>();
        CheckPart(errors, nameField, Name, ":");
        CheckPart(errors, versionField, Version, ":");
        CheckPart(errors, tagField, ReleaseTag, ":-");
        return errors;
    }

    private static void CheckPart(List<FieldError> errors, string field, string value, string forbidden)
    {
        if (value.Length == 0) { errors.Add(new(field, "must not be empty")); return; }
        if (!Identifiers.Check(errors, field, value) && value.Length > Identifiers.MaxLength) return;
        foreach (var c in forbidden)
            if (value.Contains(c, StringComparison.Ordinal)) errors.Add(new(field, $"'{value}' must not contain '{c}'"));
    }
}
