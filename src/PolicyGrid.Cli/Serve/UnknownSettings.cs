using System.Collections;
using System.Reflection;
using PolicyGrid.Api.Auth;
using PolicyGrid.Api.Envelope;
using PolicyGrid.Api.Graphs;
using PolicyGrid.Api.Jobs;
using PolicyGrid.Embedded.Functions;
using PolicyGrid.Embedded.Jobs;
using PolicyGrid.Kubernetes;
using PolicyGrid.Runtime;
using PolicyGrid.Runtime.Bundles;

namespace PolicyGrid.Cli.Serve;

/// <summary>
/// Settings under <c>PolicyGrid:</c> that nothing reads. The configuration takes any key, so a misspelt one
/// (<c>PolicyGrid:Runtme:Pool:Workers</c>, <c>Pool:MemoryLimitByte</c>) was kept and ignored: the server started with the
/// default in its place, a limit the operator set not in force, and nothing said so.
/// </summary>
public static class UnknownSettings
{
    // Each section and the options class bound to it; null where the section belongs to another shape (Dapr apps) or is
    // a single value read as it is.
    private static readonly (string Section, Type? Options)[] Sections =
    [
        (PolicyRuntimeOptions.Section, typeof(PolicyRuntimeOptions)),
        (BundleCacheOptions.Section, typeof(BundleCacheOptions)),
        (ApiLimits.Section, typeof(ApiLimits)),
        (ApiAuthOptions.Section, typeof(ApiAuthOptions)),
        (JobsOptions.Section, typeof(JobsOptions)),
        (LocalJobOptions.Section, typeof(LocalJobOptions)),
        (GraphExecutionOptions.Section, typeof(GraphExecutionOptions)),
        ("PolicyGrid:Functions", typeof(FunctionHostOptions)),
        (KubernetesJobOptions.Section, typeof(KubernetesJobOptions)),
        (ExecutorNodeOptions.Section, typeof(ExecutorNodeOptions)),
        (JobsOptions.Section + ":Launcher", null),
        ("PolicyGrid:Functions:IdleTimeout", null), // the Dapr functions app's (a settings file may serve both shapes)
        ("PolicyGrid:Dapr", null),
    ];

    /// <summary>The keys under <c>PolicyGrid:</c> given a value that no PolicyGrid setting reads.</summary>
    public static IReadOnlyList<string> In(IConfiguration configuration) =>
        [.. configuration.GetSection("PolicyGrid").AsEnumerable()
            // A key without a value is a section; an empty one is how the host's tools pass a section above its keys.
            .Where(kv => !string.IsNullOrEmpty(kv.Value) && !Known(kv.Key))
            .Select(kv => kv.Key)
            .Order(StringComparer.OrdinalIgnoreCase)];

    private static bool Known(string key)
    {
        var matching = Sections
            .Where(s => key.Equals(s.Section, StringComparison.OrdinalIgnoreCase) || key.StartsWith(s.Section + ":", StringComparison.OrdinalIgnoreCase))
            .ToList();
        if (matching.Count == 0) return false;
        var (section, options) = matching.MaxBy(s => s.Section.Length);
        if (options is null) return true;
        return key.Length > section.Length && Reads(options, key[(section.Length + 1)..].Split(':'));
    }

    // Whether binding an object of type to configuration reads the key path below it.
    private static bool Reads(Type type, ReadOnlySpan<string> path)
    {
        var property = type.GetProperty(path[0], BindingFlags.Public | BindingFlags.Instance | BindingFlags.IgnoreCase);
        if (property is null) return false;
        return path.Length == 1 || Below(Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType, path[1..]);
    }

    private static bool Below(Type type, ReadOnlySpan<string> path)
    {
        if (Scalar(type)) return false; // Pool:Workers:Extra
        if (typeof(IDictionary).IsAssignableFrom(type) || type.GetInterfaces().Any(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IDictionary<,>)))
            return true;
        if (typeof(IEnumerable).IsAssignableFrom(type))
        {
            if (!int.TryParse(path[0], out _)) return false;
            var element = type.IsArray ? type.GetElementType()! : type.GetGenericArguments().FirstOrDefault() ?? typeof(object);
            return path.Length == 1 || Below(element, path[1..]);
        }
        return Reads(type, path);
    }

    private static bool Scalar(Type type) =>
        type.IsPrimitive || type.IsEnum || type == typeof(string) || type == typeof(decimal) || type == typeof(TimeSpan) || type == typeof(DateTime)
        || type == typeof(DateTimeOffset) || type == typeof(Uri) || type == typeof(Guid);
}
