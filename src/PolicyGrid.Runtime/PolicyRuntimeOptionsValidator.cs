using Microsoft.Extensions.Options;

namespace PolicyGrid.Runtime;

/// <summary>
/// Refuses, at start, runtime settings that would otherwise fail later and quietly: a decision log that could
/// never be pruned or written, deadlines no call could meet, workers that would run as root. Each failure names the setting and what it must be.
/// </summary>
public sealed class PolicyRuntimeOptionsValidator : IValidateOptions<PolicyRuntimeOptions>
{
    /// <summary>The smallest frame a worker must be allowed to send: its ready line and an error reply fit.</summary>
    public const int MinResultBytes = 4096;

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
        checks.Check(d.RetryInterval > TimeSpan.Zero, "Decisions:RetryInterval", "greater than zero", d.RetryInterval);
        checks.Check(d.RefusesUnrecorded() || string.Equals(d.WhenUnrecorded, DecisionLogOptions.Serve, StringComparison.OrdinalIgnoreCase),
            "Decisions:WhenUnrecorded", $"{DecisionLogOptions.Serve} (run calls the decision log cannot record) or {DecisionLogOptions.Refuse} (answer them 503)", $"'{d.WhenUnrecorded}'");
        foreach (var field in d.IndexedFieldList())
            checks.Check(DecisionLogOptions.IndexableFields.Contains(field), "Decisions:IndexedFields",
                $"a comma-separated list of {string.Join(", ", DecisionLogOptions.IndexableFields)}", $"'{d.IndexedFields}' (it names '{field}')");
        var e = options.Execution;
        checks.Check(e.DefaultTimeout > TimeSpan.Zero, "Execution:DefaultTimeout", "greater than zero", e.DefaultTimeout);
        checks.Check(e.MaxTimeout > TimeSpan.Zero, "Execution:MaxTimeout", "greater than zero", e.MaxTimeout);
        var r = options.RemoteExecutors;
        checks.Check(r.MaxAnswerBytes >= 1024, "RemoteExecutors:MaxAnswerBytes", "1024 or more", r.MaxAnswerBytes);
        checks.Check(r.Overhead >= TimeSpan.Zero, "RemoteExecutors:Overhead", "zero or more", r.Overhead);
        checks.Check(r.FunctionCallTimeout > TimeSpan.Zero, "RemoteExecutors:FunctionCallTimeout", "greater than zero", r.FunctionCallTimeout);
        checks.Check(r.FunctionDeployTimeout > TimeSpan.Zero, "RemoteExecutors:FunctionDeployTimeout", "greater than zero", r.FunctionDeployTimeout);
        for (var i = 0; i < r.TokenNodes.Length; i++)
            checks.Check(RemoteExecutorOptions.TryParseNode(r.TokenNodes[i], out _), $"RemoteExecutors:TokenNodes:{i}",
                "an executor address without a path: http(s)://host:port or dapr://app-id", $"'{r.TokenNodes[i]}'");
        var p = options.Pool;
        checks.Check(p.Workers >= 1, "Pool:Workers", "1 or more", p.Workers);
        checks.Check(p.MaxResidentPolicies >= 1, "Pool:MaxResidentPolicies", "1 or more", p.MaxResidentPolicies);
        checks.Check(p.IdleStopAfter >= TimeSpan.Zero, "Pool:IdleStopAfter", "zero (never) or more", p.IdleStopAfter);
        checks.Check(p.GoneSweepInterval >= TimeSpan.Zero, "Pool:GoneSweepInterval", "zero (never) or more", p.GoneSweepInterval);
        checks.Check(p.WorkerUidStart >= 1, "Pool:WorkerUidStart", "1 or more (0 is root)", p.WorkerUidStart);
        checks.Check(p.WorkerUidBase is null or >= 1, "Pool:WorkerUidBase", "unset or 1 or more (0 is root)", p.WorkerUidBase ?? 0);
        // Accepted at start before, each of these failed every call later in a way that did not name it: MaxQueue 0 refused
        // every call (429), a negative QueueWait answered 500, StartTimeout 0 or a MaxResultBytes too small for the worker's
        // ready line blamed the Python interpreter (503), and a negative MemoryLimitBytes silently meant no limit at all.
        checks.Check(p.MaxQueue >= 1, "Pool:MaxQueue", "1 or more", p.MaxQueue);
        checks.Check(p.QueueWait > TimeSpan.Zero, "Pool:QueueWait", "greater than zero", p.QueueWait);
        checks.Check(p.RetryAfterSeconds >= 0, "Pool:RetryAfterSeconds", "0 or more", p.RetryAfterSeconds);
        checks.Check(p.MaxInstancesPerWorker >= 1, "Pool:MaxInstancesPerWorker", "1 or more", p.MaxInstancesPerWorker);
        checks.Check(p.PackCallsUnder >= TimeSpan.Zero, "Pool:PackCallsUnder", "zero or more", p.PackCallsUnder);
        checks.Check(p.PackBelowCpuShare >= 0, "Pool:PackBelowCpuShare", "0 or more", p.PackBelowCpuShare);
        checks.Check(p.StartTimeout > TimeSpan.Zero, "Pool:StartTimeout", "greater than zero", p.StartTimeout);
        checks.Check(p.PrivateTempBytes >= 1, "Pool:PrivateTempBytes", "1 or more", p.PrivateTempBytes);
        checks.Check(p.MemoryLimitBytes >= 1, "Pool:MemoryLimitBytes", "1 or more", p.MemoryLimitBytes);
        checks.Check(p.MaxProcesses >= 1, "Pool:MaxProcesses", "1 or more", p.MaxProcesses);
        checks.Check(p.MaxOpenFiles >= 1, "Pool:MaxOpenFiles", "1 or more", p.MaxOpenFiles);
        checks.Check(p.MaxFileSizeBytes >= 1, "Pool:MaxFileSizeBytes", "1 or more", p.MaxFileSizeBytes);
        checks.Check(p.CpuSecondsPerWorker >= 1, "Pool:CpuSecondsPerWorker", "1 or more", p.CpuSecondsPerWorker);
        checks.Check(p.MaxResultBytes >= MinResultBytes, "Pool:MaxResultBytes", $"{MinResultBytes} or more", p.MaxResultBytes);
        checks.Check(p.MaxLogBytesPerCall >= 0, "Pool:MaxLogBytesPerCall", "0 or more", p.MaxLogBytesPerCall);
        checks.Check(p.MaxLogLineBytes >= 1, "Pool:MaxLogLineBytes", "1 or more", p.MaxLogLineBytes);
        return checks.Result;
    }
}
