using Microsoft.Extensions.Options;

namespace PolicyGrid.Runtime;

/// <summary>
/// Collects the settings of one configuration section that are out of range, each as
/// "<c>{section}:{setting} is {value}; it must be {rule}</c>", for the options validators.
/// </summary>
public sealed class SettingChecks(string section)
{
    private readonly List<string> failures = [];

    public void Check(bool ok, string setting, string rule, object value)
    {
        if (!ok) failures.Add($"{section}:{setting} is {value}; it must be {rule}");
    }

    public ValidateOptionsResult Result => failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
}

/// <summary>
/// A setting names something the server cannot use (a directory it cannot create, write or trust): the message names
/// the setting, the path and what to do. <c>serve</c> tells it in one line and exits 2, not with a stack trace.
/// </summary>
public sealed class UnusableSettingException(string message, Exception? inner = null) : InvalidOperationException(message, inner);
