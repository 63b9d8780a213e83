using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Api.Jobs;

/// <summary>
/// Reads a policy's <c>resource_estimates</c> for jobs. The contract leaves its shape open; these
/// keys are understood: <c>timeout_seconds</c>; <c>cpu</c> (a Kubernetes quantity such as "500m" or a
/// number of cores) or <c>vcpus</c>; <c>memory</c> (a quantity such as "256Mi") or <c>memory_mb</c>.
/// </summary>
public static class ResourceEstimates
{
    // Under one tick of the clock a timeout is a deadline of 0: a job submitted with it was accepted and then failed
    // 'timeout_seconds: must be greater than 0'. Such an estimate counts as none, as 0 or a negative one does.
    public static double? TimeoutSeconds(JsonObject estimates) =>
        Number(estimates["timeout_seconds"]) is { } t && t >= TimeSpan.FromTicks(1).TotalSeconds ? t : null;

    public static JobResources Resources(JsonObject estimates)
    {
        var cpu = Quantity(estimates["cpu"]) ?? Quantity(estimates["vcpus"]);
        var memory = Quantity(estimates["memory"])
            ?? (Number(estimates["memory_mb"]) is { } mb && mb > 0 ? $"{Math.Ceiling(mb).ToString(CultureInfo.InvariantCulture)}Mi" : null);
        return new JobResources(cpu, memory);
    }

    private static string? Quantity(JsonNode? node) => node switch
    {
        JsonValue v when v.GetValueKind() == JsonValueKind.String && v.GetValue<string>().Trim() is { Length: > 0 } s => s,
        JsonValue v when v.GetValueKind() == JsonValueKind.Number && v.GetValue<double>() > 0 => v.GetValue<double>().ToString(CultureInfo.InvariantCulture),
        _ => null,
    };

    private static double? Number(JsonNode? node) =>
        node is JsonValue v && v.GetValueKind() == JsonValueKind.Number ? v.GetValue<double>() : null;
}
