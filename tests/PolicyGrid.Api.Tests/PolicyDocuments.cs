using System.Text.Json.Nodes;

namespace PolicyGrid.Api.Tests;

/// <summary>Policy bodies as users send them: the contract's ip_allowlist shape, varied per test.</summary>
public static class PolicyDocuments
{
    public static JsonObject IpAllowlist(string name, string code, string version = "1.0", string tag = "beta") => new()
    {
        ["name"] = name,
        ["version"] = version,
        ["release_tag"] = tag,
        ["code"] = code,
        ["type"] = "python_class_v1",
        ["tags"] = "network,security",
        ["metadata"] = new JsonObject { ["owner"] = "netops", ["audience"] = new JsonArray("internal", "partners"), ["risk"] = 3 },
        ["description"] = "Allows listed IPv4 addresses",
        ["policy_input_schema"] = new JsonObject { ["ip"] = new JsonObject { ["type"] = "string", ["required"] = true } },
        ["policy_settings_schema"] = new JsonObject
        {
            ["remote_allowlist_url"] = new JsonObject { ["type"] = "string" },
            ["api_key"] = new JsonObject { ["type"] = "string", ["secret"] = true },
        },
        ["policy_parameters_schema"] = new JsonObject
        {
            ["local_allowlist"] = new JsonObject
            {
                ["type"] = "array",
                ["items"] = new JsonObject { ["type"] = "string", ["pattern"] = @"^\d{1,3}(\.\d{1,3}){3}$" },
            },
        },
        ["policy_settings"] = new JsonObject { ["remote_allowlist_url"] = "", ["api_key"] = "s3cr3t-key" },
        ["policy_parameters"] = new JsonObject { ["local_allowlist"] = new JsonArray("10.0.0.1") },
    };

    public static string Uri(string name, string version = "1.0", string tag = "beta") => $"{name}:{version}-{tag}";

    public static string Unique(string stem) => $"{stem}_{Guid.NewGuid().ToString("N")[..8]}";
}
