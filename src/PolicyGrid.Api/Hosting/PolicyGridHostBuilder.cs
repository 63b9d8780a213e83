using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Configuration.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.FileProviders;
using Microsoft.Extensions.Logging;

namespace PolicyGrid.Api.Hosting;

/// <summary>The web host builder every PolicyGrid process starts from (serve and the Dapr apps).</summary>
public static class PolicyGridHostBuilder
{
    private const string ReloadOnChangeKey = "hostBuilder:reloadConfigOnChange";

    /// <summary>
    /// <see cref="WebApplication.CreateBuilder(WebApplicationOptions)"/>, except that appsettings.json (and
    /// appsettings.{Environment}.json) in the directory the process starts in are re-read on change by polling those
    /// files (tokens can be rotated without a restart). The framework's default watches the whole tree under that
    /// directory: started from a home directory or / that is tens of thousands of inotify watches, seconds of
    /// start-up, a failed start where the watch limit is low, and a wake-up for every file written below it.
    /// </summary>
    public static WebApplicationBuilder Create(string[] args)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = [.. args, $"--{ReloadOnChangeKey}=false"] });
        var root = builder.Environment.ContentRootPath.TrimEnd(Path.DirectorySeparatorChar);
        var sources = ((IConfigurationBuilder)builder.Configuration).Sources;
        PhysicalFileProvider? polled = null;
        for (var i = 0; i < sources.Count; i++)
        {
            if (sources[i] is not JsonConfigurationSource { FileProvider: PhysicalFileProvider provider, Path: { } path } json
                || !string.Equals(provider.Root.TrimEnd(Path.DirectorySeparatorChar), root, StringComparison.Ordinal))
                continue;
            polled ??= new PhysicalFileProvider(builder.Environment.ContentRootPath) { UsePollingFileWatcher = true, UseActivePolling = true };
            sources[i] = new JsonConfigurationSource { Path = path, Optional = json.Optional, ReloadOnChange = true, FileProvider = polled };
        }
        if (polled is not null) builder.Services.AddSingleton(new SettingsFilePolling(polled));
        QuietRequestDiagnostics(builder);
        return builder;
    }

    /// <summary>The logging category under which ASP.NET logs every request's start and end.</summary>
    public const string RequestDiagnosticsCategory = "Microsoft.AspNetCore.Hosting.Diagnostics";

    /// <summary>
    /// Turns ASP.NET's per-request diagnostics off unless the settings name a level for them. While that category
    /// logs at any level, every request gets an Activity and a logging scope, even though the request lines themselves
    /// (Information) are filtered out: ~900 bytes and 4–10 µs of CPU per request, 8–20% of a small request here
    /// (`bench type2 --breakdown --only bench/fixed`). A tracing listener still gets its activities. Start-up failures
    /// logged there are also thrown, and the caller reports them.
    /// </summary>
    private static void QuietRequestDiagnostics(WebApplicationBuilder builder)
    {
        if (builder.Configuration[$"Logging:LogLevel:{RequestDiagnosticsCategory}"] is null)
            builder.Logging.AddFilter(RequestDiagnosticsCategory, LogLevel.None);
    }

    /// <summary>Owns the polling provider so the container stops its timer with the host.</summary>
    private sealed class SettingsFilePolling(PhysicalFileProvider provider) : IDisposable
    {
        public void Dispose() => provider.Dispose();
    }
}
