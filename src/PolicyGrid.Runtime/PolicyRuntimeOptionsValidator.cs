using Microsoft.Extensions.Options;

namespace PolicyGrid.Runtime;

/// <summary>
/// Refuses, at start, runtime settings that would otherwise fail later and quietly: a decision log that could
/// never be pruned or written, deadlines no call could meet. Each failure names the setting and what it must be.
/// </summary>
public sealed class PolicyRuntimeOptionsValidator : IValidateOptions<PolicyRuntimeOptions>
{
    public ValidateOptionsResult Validate(string? name, PolicyRuntimeOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var failures = new List<string>();
        void Check(bool ok, string setting, string rule, object value)
        {
            if (!ok) failures.Add($"{PolicyRuntimeOptions.Section}:{setting} is {value}; it must be {rule}");
        }
        var d = options.Decisions;
        Check(d.MaxCount >= 0, "Decisions:MaxCount", "0 or more", d.MaxCount);
        Check(d.MaxAge >= TimeSpan.Zero, "Decisions:MaxAge", "zero or more", d.MaxAge);
        Check(d.PruneInterval > TimeSpan.Zero, "Decisions:PruneInterval", "greater than zero", d.PruneInterval);
        Check(d.QueueCapacity >= 1, "Decisions:QueueCapacity", "1 or more", d.QueueCapacity);
        Check(d.CommitInterval >= TimeSpan.Zero, "Decisions:CommitInterval", "zero or more", d.CommitInterval);
        var e = options.Execution;
        Check(e.DefaultTimeout > TimeSpan.Zero, "Execution:DefaultTimeout", "greater than zero", e.DefaultTimeout);
        Check(e.MaxTimeout > TimeSpan.Zero, "Execution:MaxTimeout", "greater than zero", e.MaxTimeout);
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
