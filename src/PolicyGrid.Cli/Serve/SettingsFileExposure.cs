using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Configuration.Json;

namespace PolicyGrid.Cli.Serve;

/// <summary>
/// Settings files other users can read. Policy code runs as other users on this host (the workers), and any file
/// readable by all is readable by it: a settings file that holds API tokens must be the server user's alone.
/// </summary>
public static class SettingsFileExposure
{
    /// <summary>The JSON settings files of <paramref name="configuration"/> that hold a setting under <paramref name="section"/> and that group or others may read.</summary>
    public static IReadOnlyList<string> ReadableByOthers(IConfigurationRoot configuration, string section)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        if (OperatingSystem.IsWindows()) return [];
        var exposed = new List<string>();
        foreach (var provider in configuration.Providers.OfType<JsonConfigurationProvider>())
        {
            if (!provider.GetChildKeys([], section).Any()) continue;
            var file = provider.Source.FileProvider?.GetFileInfo(provider.Source.Path ?? "");
            if (file is not { Exists: true, PhysicalPath: { } path }) continue;
            if ((File.GetUnixFileMode(path) & (UnixFileMode.GroupRead | UnixFileMode.OtherRead)) != 0) exposed.Add(path);
        }
        return exposed;
    }
}
