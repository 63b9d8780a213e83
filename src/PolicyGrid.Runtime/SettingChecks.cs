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
