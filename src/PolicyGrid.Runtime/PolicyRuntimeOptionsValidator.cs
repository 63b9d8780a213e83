using Microsoft.Extensions.Options;

namespace PolicyGrid.Runtime;

/// <summary>
/// Refuses, at start, runtime settings that would otherwise fail later and quietly: a decision log that could
/// never be pruned or written, deadlines no call could meet, workers that would run as root. Each failure names the setting and what it must be.
/// </summary>
public sealed class PolicyRuntimeOptionsValidator : IValidateOptions<PolicyRuntimeOptions>
{
    public ValidateOptionsResult Validate(string? name, PolicyRuntimeOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var checks = new SettingChecks(PolicyRuntimeOptions.Section);
        var d = options.Decisions;
        checks.Check(d.MaxCount >= 0, "Decisions:MaxCount", "0 or more", d.MaxCount);
        checks.Check(d.MaxAge >= TimeSpan.Zero, "Decisions:MaxAge", "zero or more", d.MaxAge);
        checks.Check(d.PruneInterval > TimeSpan.Zero, "Decisions:PruneInterval", "greater than zero", d.PruneInterval);
        checks.Check(d.QueueCapacity >= 1, "Decisions:QueueCapacity", "1 or more", d.QueueCapacity);
        checks.Check(d.CommitInterval >= TimeSpan.Zero, "Decisions:CommitInterval", "zero or more", d.CommitInterval);
        var e = options.Execution;
        checks.Check(e.DefaultTimeout > TimeSpan.Zero, "Execution:DefaultTimeout", "greater than zero", e.DefaultTimeout);
        checks.Check(e.MaxTimeout > TimeSpan.Zero, "Execution:MaxTimeout", "greater than zero", e.MaxTimeout);
        var r = options.RemoteExecutors;
        checks.Check(r.MaxAnswerBytes >= 1024, "RemoteExecutors:MaxAnswerBytes", "1024 or more", r.MaxAnswerBytes);
        checks.Check(r.Overhead >= TimeSpan.Zero, "RemoteExecutors:Overhead", "zero or more", r.Overhead);
        checks.Check(r.FunctionCallTimeout > TimeSpan.Zero, "RemoteExecutors:FunctionCallTimeout", "greater than zero", r.FunctionCallTimeout);
        for (var i = 0; i < r.TokenNodes.Length; i++)
            checks.Check(RemoteExecutorOptions.TryParseNode(r.TokenNodes[i], out _), $"RemoteExecutors:TokenNodes:{i}",
                "an executor address without a path: http(s)://host:port or dapr://app-id", $"'{r.TokenNodes[i]}'");
        var p = options.Pool;
        checks.Check(p.Workers >= 1, "Pool:Workers", "1 or more", p.Workers);
        checks.Check(p.MaxResidentPolicies >= 1, "Pool:MaxResidentPolicies", "1 or more", p.MaxResidentPolicies);
        checks.Check(p.WorkerUidStart >= 1, "Pool:WorkerUidStart", "1 or more (0 is root)", p.WorkerUidStart);
        checks.Check(p.WorkerUidBase is null or >= 1, "Pool:WorkerUidBase", "unset or 1 or more (0 is root)", p.WorkerUidBase ?? 0);
        return checks.Result;
    }
}
